"""The file source and the manifest loader, on real files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.harness import k8s
from xds_ingress.sources.files import FileSource
from xds_ingress.store import Store


def keys(store: Store) -> set[tuple[str, str, str]]:
    return store.keys()


def test_directory_formats_and_changes(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "multi.yaml").write_text(yaml.safe_dump_all([k8s.ingress_class(), k8s.service("one")]))
    (tmp_path / "sub" / "list.yml").write_text(yaml.safe_dump(
        {"apiVersion": "v1", "kind": "List", "items": [k8s.service("two"), k8s.service("three")]}))
    (tmp_path / "svc.json").write_text(json.dumps(k8s.service("four")))
    (tmp_path / "notes.txt").write_text("not a manifest")
    (tmp_path / ".hidden.yaml").write_text(yaml.safe_dump(k8s.service("hidden")))
    store = Store()
    src = FileSource([tmp_path], store)
    assert src.scan() == 5
    assert {k[2] for k in keys(store)} == {"xds", "one", "two", "three", "four"}
    assert src.scan() == 0  # nothing changed, nothing re-read

    (tmp_path / "svc.json").unlink()
    (tmp_path / "multi.yaml").write_text(yaml.safe_dump_all([k8s.ingress_class(), k8s.service("one", ports=[("web", 81)])]))
    assert src.scan() == 2  # one deleted, one changed
    assert {k[2] for k in keys(store)} == {"xds", "one", "two", "three"}
    assert store.get(("Service", "default", "one")).ports[0].port == 81


def test_bad_file_is_a_diagnostic_and_others_load(tmp_path: Path) -> None:
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(k8s.service("good")))
    (tmp_path / "broken.yaml").write_text("kind: Service\nmetadata: {name: [unclosed\n")
    (tmp_path / "latin1.yaml").write_bytes(b"kind: Service\nmetadata: {name: caf\xe9}\n")
    (tmp_path / "scalar.yaml").write_text("just a string\n")
    store = Store()
    FileSource([tmp_path], store).scan()
    assert {k[2] for k in keys(store)} == {"good"}
    by_file = {Path(d.name).name: d for d in store.diagnostics()}
    assert "does not parse as YAML" in by_file["broken.yaml"].message
    assert "not valid UTF-8" in by_file["latin1.yaml"].message
    assert "not a Kubernetes object" in by_file["scalar.yaml"].message


def test_duplicate_object_first_wins(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(k8s.service("dup", ports=[("http", 80)])))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(k8s.service("dup", ports=[("http", 90)])))
    store = Store()
    FileSource([tmp_path], store).scan()
    assert store.get(("Service", "default", "dup")).ports[0].port == 80
    (d,) = [d for d in store.diagnostics() if d.reason == "DuplicateObject"]
    assert "a.yaml" in d.message and "b.yaml" in d.message and d.name == "dup"


def test_store_drops_noop_updates_and_notifies() -> None:
    store = Store()
    calls = []
    store.add_listener(lambda: calls.append(1))
    svc = k8s.service("s")
    assert store.upsert(svc)
    changed = dict(svc, metadata=dict(svc["metadata"], resourceVersion="42"))
    assert not store.upsert(changed)  # only the resourceVersion differs
    assert store.delete(("Service", "default", "s"))
    assert not store.delete(("Service", "default", "s"))
    assert len(calls) == 2
    assert store.take_changes() == {("Service", "default", "s")}
    # A TLS Secret turned into another type stops being a TLS Secret.
    from tests.harness.certs import make_ca, tls_secret
    cert = make_ca().issue(["x.example.com"])
    sec = tls_secret("default", "s", cert.cert_pem, cert.key_pem)
    assert store.upsert(sec) and store.get(("Secret", "default", "s")) is not None
    assert store.upsert(dict(sec, type="Opaque"))
    assert store.get(("Secret", "default", "s")) is None
