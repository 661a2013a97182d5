"""hybrec's HTTP API (FastAPI): ``create_app(settings, components=("reco",))`` in :mod:`hybrec.api.app`."""
