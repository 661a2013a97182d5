"""The SparkSession hybrec trains on: one per process, started on first use, quiet, stopped with its JVM.

Settings applied (see docs/scale-out.md): UI and console progress off, Spark's own log output limited to errors,
``spark.local.dir`` and a checkpoint folder in a temporary directory deleted on stop, and on a local master a 1 GB
driver heap and as many shuffle partitions as cores. pyspark is imported only inside these functions.
"""

from __future__ import annotations

import atexit
import ctypes.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

DEFAULT_MASTER = "local[2]"
#: Driver heap on a local master (where the driver JVM also runs every task). On a cluster the driver memory is left
#: to spark-defaults.conf, since the factors are collected there and their size is deployment-specific.
LOCAL_DRIVER_MEMORY = "1g"
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
# The py4j gateway's logger: with no level of its own, a pyspark driver announces "Setting default log level".
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""

_lock = threading.RLock()
_session: SparkSession | None = None
_session_master: str | None = None
_session_dir: Path | None = None


class SparkUnavailableError(RuntimeError):
    """pyspark is not installed, or Spark (Java) could not be started."""


def _local_cores(master: str) -> int | None:
    """Cores of a ``local``, ``local[N]`` or ``local[*]`` master; None for a cluster master."""
    if master == "local":
        return 1
    match = re.fullmatch(r"local\[(\d+|\*)(?:,\s*\d+)?\]", master)
    if match is None:
        return None
    if match.group(1) == "*":
        return os.cpu_count() or 1
    return max(int(match.group(1)), 1)


def _netlib_options() -> list[str]:
    """JVM flags that stop netlib probing for a native BLAS / LAPACK this machine lacks (each failed probe prints a
    dlopen error at every start); MLlib then uses its Java implementation, as it would after the failed probe."""
    return [
        f"-Ddev.ludovic.netlib.{library}.allowNative=false"
        for library in ("blas", "lapack")
        if ctypes.util.find_library(library) is None
    ]


def _alive(session: SparkSession) -> bool:
    return session.sparkContext._jsc is not None  # pyspark clears it on stop


def get_spark_session(
    master: str = DEFAULT_MASTER, *, driver_memory: str | None = None, conf: Mapping[str, str] | None = None
) -> SparkSession:
    """The process's cached SparkSession on ``master``, started on first use (a different master restarts it).

    Parameters
    ----------
    master : str
        ``local[N]``, ``local[*]`` or a cluster URL such as ``spark://host:7077``.
    driver_memory : str, optional
        ``spark.driver.memory``; default :data:`LOCAL_DRIVER_MEMORY` on a local master, Spark's configuration
        (spark-defaults.conf) otherwise.
    conf : mapping, optional
        Further Spark settings, applied last.

    Raises
    ------
    SparkUnavailableError
        pyspark is missing or the JVM did not start (no Java 17+ on ``PATH`` / ``JAVA_HOME``).
    """
    global _session, _session_master, _session_dir
    with _lock:
        if _session is not None and _alive(_session) and _session_master == master:
            return _session
        if _session is not None:
            log.info("restarting Spark: master %s -> %s", _session_master, master)
            stop_spark_session()
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise SparkUnavailableError(
                "als_backend=spark needs pyspark: install the spark extra (pip install 'hybrec[spark]')"
            ) from exc
        workdir = Path(tempfile.mkdtemp(prefix="hybrec-spark-"))
        (workdir / "log4j2.properties").write_text(_LOG4J2)
        cores = _local_cores(master)
        settings: dict[str, str] = {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            "spark.local.dir": str(workdir / "local"),
            "spark.sql.warehouse.dir": str(workdir / "warehouse"),
            "spark.driver.extraJavaOptions": " ".join(
                [f"-Dlog4j2.configurationFile=file:{workdir / 'log4j2.properties'}", *_netlib_options()]
            ),
        }
        if cores is not None:
            # Spark's 200 shuffle partitions are tuned for clusters; locally each would be a near-empty task.
            settings["spark.sql.shuffle.partitions"] = str(cores)
            settings["spark.default.parallelism"] = str(cores)
        memory = driver_memory or (LOCAL_DRIVER_MEMORY if cores is not None else None)
        if memory is not None:
            settings["spark.driver.memory"] = memory
        settings.update(conf or {})
        builder = SparkSession.builder.master(master).appName("hybrec-als")
        for key, value in settings.items():
            builder = builder.config(key, value)
        started = time.perf_counter()
        try:
            session = builder.getOrCreate()
        except Exception as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise SparkUnavailableError(
                f"could not start Spark on master {master!r} ({type(exc).__name__}: {exc}); "
                "Spark needs Java 17+ on PATH or JAVA_HOME"
            ) from exc
        session.sparkContext.setLogLevel("ERROR")
        if cores is not None and "PYSPARK_PYTHON" not in os.environ:
            # Local Python workers run this interpreter, not whatever `python3` is on PATH (pyspark's default), so
            # their version always matches the driver's. A cluster's executors use PYSPARK_PYTHON or their own.
            session.sparkContext.pythonExec = sys.executable
        logging.getLogger("py4j").setLevel(logging.WARNING)  # py4j logs every gateway connection at INFO
        # Checkpoints cut ALS's lineage every 10 iterations. A cluster needs shared storage for them (executors
        # write there): set spark.checkpoint.dir in spark-defaults.conf or ``conf``; else a local temporary folder.
        if session.sparkContext.getCheckpointDir() is None:
            session.sparkContext.setCheckpointDir(str(workdir / "checkpoints"))
        _session, _session_master, _session_dir = session, master, workdir
        log.info("Spark session on %s started in %.1fs", master, time.perf_counter() - started)
        return session


def _shutdown_gateway() -> None:
    """End the driver JVM pyspark launched: ``SparkSession.stop`` leaves it running (with its heap) for the life of
    the Python process, which a long-lived scheduler should not pay between runs. The next session relaunches it."""
    from pyspark import SparkContext

    gateway = SparkContext._gateway
    if gateway is None:
        return
    process = getattr(gateway, "proc", None)
    try:
        gateway.shutdown()
    except Exception:
        log.debug("closing the py4j gateway failed", exc_info=True)
    if process is not None:
        if process.stdin is not None:
            process.stdin.close()  # pyspark's gateway server exits when its stdin closes
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    SparkContext._gateway = None
    SparkContext._jvm = None


def stop_spark_session() -> None:
    """Stop the cached session (if any), end its JVM and delete its temporary folder."""
    global _session, _session_master, _session_dir
    with _lock:
        if _session is not None:
            try:
                _session.stop()
                _shutdown_gateway()
            except Exception:  # a JVM that already died must not fail the caller's cleanup
                log.warning("stopping the Spark session failed", exc_info=True)
        if _session_dir is not None:
            shutil.rmtree(_session_dir, ignore_errors=True)
        _session, _session_master, _session_dir = None, None, None


atexit.register(stop_spark_session)


@contextmanager
def spark_session_scope() -> Iterator[None]:
    """Stop, on exit, a cached session that was started inside the block (one already running is left running)."""
    with _lock:
        running_before = _session is not None
    try:
        yield
    finally:
        if not running_before:
            stop_spark_session()
