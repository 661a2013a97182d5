"""hybrec's production topology as local processes (``scripts/run-production-local``): the same services and start
order as ``deploy/docker-compose.yaml``, on this machine's PostgreSQL and Redis, for trying and testing production
mode without Docker."""
