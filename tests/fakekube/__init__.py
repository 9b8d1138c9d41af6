"""A fake Kubernetes API server for tests: the real HTTP list/watch protocol, in-process.

    with FakeKube() as kube:                      # aiohttp on 127.0.0.1:<free port>, own thread
        kube.create({"kind": "Service", "metadata": {"name": "web", "namespace": "default"}})
        api = kubernetes.client.CoreV1Api(kube.api_client())   # or load_kube_config(kube.kubeconfig(p))
        api.list_namespaced_service("default")    # lists, watches, writes: the real client, real HTTP
        kube.drop_watches(); kube.stall_watches(); kube.expire_watches(); kube.compact()
        kube.fail_next(2, status=429, retry_after=1)   # faults for the next matching requests
        assert kube.objects() == ...; [r for r in kube.requests if r.method == "PUT"]

Test-side methods are thread-safe (they run on the server's loop). See server.py for the API.
"""

from .server import FakeKube, Request
from .store import ApiError

__all__ = ["ApiError", "FakeKube", "Request"]
