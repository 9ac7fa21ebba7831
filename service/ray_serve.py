"""`article-qa serve --ray ADDRESS --replicas N`: the same API on Ray Serve.

N replicas of the Litestar app (`service.app.app_from_environment`, the app `serve
--workers` runs) sit behind Ray Serve's HTTP proxy on the head node, so every route,
the chat page, API keys and every error shape are the ones a single server has. Each
replica loads the models and opens the index (sharded or not) itself: the index
directory must be at the same path on every node (shared storage), and a replica that
dies is restarted by Serve while the others answer.
"""

from __future__ import annotations

import os
import signal
import threading

from indexing.cluster import ClusterError, connect
from service.settings import Settings

APP_NAME = "article-qa"
# CPUs a replica reserves: its reader and embedder run one request at a time.
REPLICA_CPUS = 1.0
# Requests one replica takes at once before the proxy queues them at another.
MAX_ONGOING_REQUESTS = 8


def _environment(settings: Settings) -> dict[str, str]:
    """The ARTICLE_QA_* variables a replica rebuilds `settings` from."""
    env = {k: v for k, v in os.environ.items() if k.startswith("ARTICLE_QA_")}
    env.update({"ARTICLE_QA_INDEX": str(os.path.abspath(settings.index)),
                "ARTICLE_QA_CORPUS": str(os.path.abspath(settings.corpus)),
                "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    if settings.min_confidence is not None:
        env["ARTICLE_QA_MIN_CONFIDENCE"] = repr(settings.min_confidence)
    return env


def application(settings: Settings, replicas: int):
    """The Serve application: `replicas` copies of the API."""
    from ray import serve

    from service.app import app_from_environment

    @serve.deployment(name="api", num_replicas=replicas,
                      max_ongoing_requests=MAX_ONGOING_REQUESTS,
                      ray_actor_options={"num_cpus": REPLICA_CPUS,
                                         "runtime_env": {"env_vars": _environment(settings)}})
    @serve.ingress(app_from_environment)
    class API:
        """One replica: the app, its models and its view of the index."""

    return API.bind()


def serve_on_ray(settings: Settings, address: str, replicas: int, echo=print) -> None:
    """Deploy the API on the cluster at `address` and block until SIGINT/SIGTERM, then
    take the application down (the cluster itself keeps running)."""
    ray = connect(address)
    from ray import serve
    from ray.serve.config import HTTPOptions, ProxyLocation

    cpus = ray.cluster_resources().get("CPU", 0)
    if cpus < replicas * REPLICA_CPUS:
        raise ClusterError(f"the Ray cluster at {address} has {cpus:g} CPUs; {replicas} "
                           f"replicas need {replicas * REPLICA_CPUS:g} (add nodes or ask for "
                           "fewer --replicas)")
    serve.start(http_options=HTTPOptions(host=settings.host, port=settings.port),
                proxy_location=ProxyLocation.HeadOnly)
    try:
        serve.run(application(settings, replicas), name=APP_NAME, route_prefix="/",
                  blocking=False)
        echo(f"serving on Ray at {address}: {replicas} replicas behind "
             f"http://{settings.host}:{settings.port}")
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        serve.delete(APP_NAME)
        serve.shutdown()
