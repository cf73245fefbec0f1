"""`ganexport deploy` carries the front door's access rules: nginx wants the same tokens and terminates TLS,
`--compose --public` needs a token file, and the InferenceService says how the mesh authenticates.

Every written file is still read back with its reader's schema (test_deploy.py's checks); nginx.conf, which
has none here, is read for the directives that make the rules.
"""

from __future__ import annotations

import re
import secrets
import stat

import pytest
import yaml

from ganexport.serving.auth import AUTH_HEADER, SCHEME, UNAUTHENTICATED
from ganexport.serving.deploy_cli import ISVC_FILE
from ganexport.serving.deploy_compose import COMPOSE_FILE, GRPC_HEALTH, GRPC_SERVICE, NGINX_FILE, TLS_DIR
from ganexport.serving.deploy_kserve import ISVC_LABEL, KServeOptions, mesh_auth
from ganexport.serving.deploy_server import PORTS, READY_PATH
from ganexport.serving.deploy_validate import check_compose

from test_auth_unit import token_file
from test_deploy import STORAGE, deploy, published  # noqa: F401  (published: the module's fixture)
from tls_certs import make_certs


@pytest.fixture(scope="module")
def secured(published, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("secured")
    tokens = {"alice": secrets.token_urlsafe(24), "ci": secrets.token_urlsafe(24)}
    path = token_file(folder / "tokens.txt", tokens)
    certs = make_certs(folder / "certs")
    out = folder / "out"
    result = deploy("--repository", str(published), "--out", str(out), "--compose", "--public", "--token-file",
                    str(path), "--tls-cert", str(certs.cert), "--tls-key", str(certs.key), "--kserve",
                    "--storage-uri", STORAGE, "--namespace", "models")
    assert result.exit_code == 0, result.output
    return out, tokens, certs, result.output


def test_nginx_wants_the_same_tokens_and_names_the_client_in_its_log(secured):
    out, tokens, _, output = secured
    conf = (out / NGINX_FILE).read_text()
    (mapping,) = re.findall(rf"map \$http_{AUTH_HEADER} \$ganexport_client \{{(.*?)\}}", conf, re.S)
    entries = dict(re.findall(r'^\s*"([^"]+)" (\S+);$', mapping, re.M))
    assert entries == {f"{SCHEME} {token}": name for name, token in tokens.items()}
    assert 'default "";' in mapping
    assert "log_format ganexport '$remote_addr $ganexport_client " in conf and "$http_authorization'" not in conf
    for server in re.split(r"\n    server \{", conf)[1:]:
        assert 'if ($ganexport_client = "")' in server and "return 401" in server, server
    assert UNAUTHENTICATED.replace('"', "'") in conf and f"add_header WWW-Authenticate {SCHEME} always;" in conf
    for side in ("proxy", "grpc"):  # the token stops at nginx
        assert f'{side}_set_header {AUTH_HEADER.title()} "";' in conf
    # open without a token: the probes, over HTTP and gRPC
    assert READY_PATH.startswith("/v2/health/") and "location /v2/health/ {" in conf
    for method in GRPC_HEALTH:
        assert f"location = /{GRPC_SERVICE}/{method} {{" in conf
    assert stat.S_IMODE((out / NGINX_FILE).stat().st_mode) == 0o600  # it holds the tokens
    for name, token in tokens.items():
        assert token not in output and token not in (out / COMPOSE_FILE).read_text() and token not in \
            (out / ISVC_FILE).read_text(), name


def test_nginx_terminates_tls_with_the_given_certificate_on_both_ports(secured):
    out, _, certs, _ = secured
    conf = (out / NGINX_FILE).read_text()
    assert f"listen {PORTS['http']} ssl;" in conf and f"listen {PORTS['grpc']} ssl;" in conf
    assert f"ssl_certificate {TLS_DIR}/cert.pem;" in conf and f"ssl_certificate_key {TLS_DIR}/key.pem;" in conf
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in conf
    doc = yaml.safe_load((out / COMPOSE_FILE).read_text())
    check_compose(COMPOSE_FILE, doc)  # what was written is what was checked
    balancer = doc["services"]["balancer"]
    mounts = {m["target"]: m for m in balancer["volumes"]}
    for name, path in (("cert.pem", certs.cert), ("key.pem", certs.key)):
        mount = mounts[f"{TLS_DIR}/{name}"]
        assert mount["read_only"] is True and mount["source"] == str(path.resolve()), mount
    probe = balancer["healthcheck"]["test"]
    assert f"https://127.0.0.1:{PORTS['http']}{READY_PATH}" in probe and "--no-check-certificate" in probe
    assert {p["host_ip"] for p in balancer["ports"]} == {"0.0.0.0"}


def test_without_tokens_nginx_is_as_before(published, tmp_path):  # noqa: F811
    assert deploy("--repository", str(published), "--out", str(tmp_path), "--compose").exit_code == 0
    conf = (tmp_path / NGINX_FILE).read_text()
    assert "$ganexport_client" not in conf and " ssl" not in conf and "location /v2/health/" not in conf


def test_deploy_refuses_what_would_listen_openly_or_cannot_apply_in_one_line(published, tmp_path):  # noqa: F811
    good = token_file(tmp_path / "tokens.txt", {"alice": secrets.token_urlsafe(24)})
    bad = tmp_path / "bad.txt"
    bad.write_text("alice:short\n")
    certs = make_certs(tmp_path / "certs")
    for args, words in [(["--compose", "--public"], "add --token-file FILE"),
                        (["--compose", "--token-file", str(bad)], f"--token-file {bad}, line 1"),
                        (["--kserve", "--storage-uri", STORAGE, "--token-file", str(good)], "applies to --compose"),
                        (["--compose", "--tls-cert", str(certs.cert)], "go together")]:
        result = deploy("--repository", str(published), "--out", str(tmp_path / "out"), *args)
        assert result.exit_code == 2, (args, result.output)
        assert result.output.strip().count("\n") == 0 and words in result.output, (args, result.output)
        assert not (tmp_path / "out").exists()


def test_the_inference_service_says_how_the_mesh_authenticates(secured):
    out, _, _, _ = secured
    text = (out / ISVC_FILE).read_text()
    comment = "\n".join(line[4:] for line in text.splitlines() if line.startswith("#   "))
    documented = list(yaml.safe_load_all(comment))
    opts = KServeOptions(storage_uri=STORAGE, namespace="models")
    assert documented == mesh_auth(opts)
    service = yaml.safe_load(text)  # the comment is only a comment: the service is what was checked
    for doc in documented:
        assert doc["spec"]["selector"]["matchLabels"] == {ISVC_LABEL: service["metadata"]["name"]}
        assert doc["metadata"]["namespace"] == service["metadata"]["namespace"]
    rules = documented[1]["spec"]["rules"]
    assert {"from": [{"source": {"requestPrincipals": ["*"]}}]} in rules
    assert {"to": [{"operation": {"paths": ["/v2/health/*"]}}]} in rules
