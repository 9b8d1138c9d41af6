"""`xds migrate`: the report over a corpus of ingress-nginx Ingresses (tests/migrate_corpus: the kinds of
ingress-nginx's documentation and examples), its expected output, the exit codes and the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from xds_ingress import cli
from xds_ingress.migrate import migrate_cmd
from xds_ingress.translate import TranslateSettings
from xds_ingress.translate.settings import NGINX_CONTROLLER_NAME

CORPUS = Path(__file__).parent / "migrate_corpus"
EXPECTED = Path(__file__).parent / "migrate_corpus.expected.json"
SETTINGS = TranslateSettings(ingress_class="nginx", controller=NGINX_CONTROLLER_NAME, nginx_compat=True)


def _run(*paths: Path, allow: bool = False, output: str = "json") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = migrate_cmd([str(p) for p in paths], SETTINGS, output=output, allow_unsupported=allow, out=out, err=err)
    return rc, out.getvalue(), err.getvalue()


def test_the_corpus_report_is_the_expected_one(request: pytest.FixtureRequest) -> None:
    assert len(list(CORPUS.glob("*.yaml"))) >= 30
    rc, out, err = _run(CORPUS)
    if request.config.getoption("--update-golden", default=False):
        EXPECTED.write_text(out, encoding="utf-8")
    assert json.loads(out) == json.loads(EXPECTED.read_text(encoding="utf-8")), (
        "the migration report changed; read the diff, then: pytest tests/test_migrate.py --update-golden")
    assert rc == 1 and "unsupported, invalid or unknown" in err


def test_the_report_says_what_each_annotation_becomes() -> None:
    report = json.loads(_run(CORPUS)[1])
    by = {(i["namespace"], i["name"]): {a["annotation"].rsplit("/", 1)[1]: a for a in i["annotations"]}
          for i in report["ingresses"]}
    assert all(i["served"] for i in report["ingresses"])  # ingressClassName nginx and the legacy annotation
    rewrite = by[("default", "rewrite")]
    assert rewrite["rewrite-target"]["status"] == "difference" and "RE2" in rewrite["rewrite-target"]["note"]
    assert by[("default", "approot")]["app-root"]["status"] == "exact"
    snippet = by[("default", "headers-snippet")]["configuration-snippet"]
    assert snippet["status"] == "unsupported" and snippet["snippet"]
    assert any("sets response headers" in m for m in snippet["messages"])
    cors = by[("web", "api-cors")]["enable-cors"]
    assert cors["status"] == "difference" and "204" in cors["note"] and not cors.get("pending")
    basic = by[("default", "ingress-with-auth")]
    assert basic["auth-type"]["status"] == "difference" and not basic["auth-type"].get("pending")
    # Its Secret holds an apr1 entry (htpasswd's default), which Envoy cannot check: the Ingress would answer 503,
    # and the report says what to do.
    assert basic["auth-secret"]["status"] == "invalid" and "htpasswd -s" in basic["auth-secret"]["note"]
    assert any("503" in m and "htpasswd -s" in m for m in basic["auth-secret"]["messages"])
    oauth = by[("kube-system", "dashboard")]
    assert oauth["auth-url"]["status"] == "invalid" and any("503" in m for m in oauth["auth-url"]["messages"])
    assert oauth["auth-signin"]["status"] == "difference" and not oauth["auth-signin"].get("pending")
    typo = by[("default", "typo")]
    assert typo["proxy-read-timout"]["status"] == "unknown"
    assert any("proxy-read-timeout?" in m for m in typo["proxy-read-timout"]["messages"])
    assert typo["ssl-redirect"]["status"] == "invalid"
    summary = {r["annotation"].rsplit("/", 1)[1]: r for r in report["summary"]}
    assert summary["canary"]["objects"] == 3 and summary["canary"]["exact"] == 3
    t = report["totals"]
    assert report["blocking"] == t["unsupported"] + t["invalid"] + t["unknown"] > 0


def test_exit_codes() -> None:
    assert _run(CORPUS, allow=True)[0] == 0
    assert _run(CORPUS / "02-app-root.yaml")[0] == 0  # nothing unsupported
    rc, out, _ = _run(CORPUS / "02-app-root.yaml", output="text")
    assert rc == 0 and "exact       app-root: '/app1'" in out and "1 exact" in out


def test_the_cli(capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["migrate", "-f", str(CORPUS / "22-configuration-snippet.yaml"), "-o", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ingresses"][0]["annotations"][0]["status"] == "unsupported"
    assert cli.main(["migrate", "-f", str(CORPUS / "22-configuration-snippet.yaml"), "--allow-unsupported"]) == 0
    assert cli.main(["migrate"]) == 2  # neither -f nor --from-cluster
    assert "either" in capsys.readouterr().err


def test_from_cluster_reads_the_objects_through_the_kubernetes_source(tmp_path: Path) -> None:
    import yaml

    from tests.fakekube import FakeKube

    with FakeKube(bookmark_interval=None) as kube:
        for doc in yaml.safe_load_all((CORPUS / "01-rewrite-capture-groups.yaml").read_text(encoding="utf-8")):
            kube.create(doc)
        out, err = io.StringIO(), io.StringIO()
        rc = migrate_cmd([], SETTINGS, from_cluster=True, kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
                         output="json", out=out, err=err)
    assert rc == 0, err.getvalue()
    (ing,) = json.loads(out.getvalue())["ingresses"]
    assert (ing["namespace"], ing["name"], ing["served"]) == ("default", "rewrite", True)
    assert {a["annotation"].rsplit("/", 1)[1]: a["status"] for a in ing["annotations"]} == {
        "rewrite-target": "difference", "use-regex": "difference"}
