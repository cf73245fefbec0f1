"""Tokens, logins, the rate limiter, TLS files and the open-listen refusal, without a server.

The checks against the running server and demo are in tests/test_auth.py and tests/test_auth_demo.py.
"""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganexport.serving import auth
from ganexport.serving.access_log import AccessLog
from ganexport.serving.auth import (
    AUTH_HEADER, MIN_TOKEN_CHARS, SCHEME, UNAUTHENTICATED, RateLimiter, TokenBook, TokenFileError, bearer,
    read_secrets, retry_after_header,
)
from ganexport.serving.tls import TlsError, TlsFiles

from tls_certs import make_certs


def token() -> str:
    return secrets.token_urlsafe(24)


def token_file(path: Path, tokens: dict[str, str], extra: str = "") -> Path:
    path.write_text("# name:token\n\n" + "".join(f"{name}:{value}\n" for name, value in tokens.items()) + extra)
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- the token file


def test_a_token_file_is_read_with_comments_blank_lines_and_spaces(tmp_path):
    tokens = {"alice": token(), "bob.ci-runner_2": token()}
    path = tmp_path / "tokens"
    path.write_text(f"# who may call\n\n  alice : {tokens['alice']}  \nbob.ci-runner_2:{tokens['bob.ci-runner_2']}\n")
    assert read_secrets(path) == tokens


@pytest.mark.parametrize("line,words", [
    ("alice {secret}", "line 2: expected name:token"),
    ("alice:short", f"at least {MIN_TOKEN_CHARS} characters"),
    ("alice:{secret} with space", "at least 16 characters of A-Z"),
    ("alice:{secret}\"", "at least 16 characters of A-Z"),
    ("al ice:{secret}", "expected name:token"),
    (":{secret}", "expected name:token"),
    ("bob:{other}", "'bob' appears twice"),
    ("carol:{other}", "'carol' has the token of another name"),
])
def test_a_bad_token_file_is_one_line_naming_file_and_line_never_a_secret(tmp_path, line, words):
    secret, other = token(), token()
    path = tmp_path / "tokens"
    path.write_text(f"bob:{other}\n" + line.format(secret=secret, other=other) + "\n")
    with pytest.raises(TokenFileError) as e:
        read_secrets(path)
    message = str(e.value)
    assert words in message and str(path) in message and "\n" not in message, message
    assert secret not in message and other not in message and "short" not in message


def test_an_empty_or_missing_token_file_is_refused(tmp_path):
    empty = tmp_path / "empty"
    empty.write_text("# nobody yet\n\n")
    with pytest.raises(TokenFileError, match="no name:token line"):
        read_secrets(empty)
    with pytest.raises(TokenFileError, match="no such file"):
        read_secrets(tmp_path / "missing")


# --------------------------------------------------------------------------- the check


def test_only_a_known_token_names_its_client(tmp_path):
    tokens = {"alice": token(), "bob": token()}
    book = TokenBook.from_file(token_file(tmp_path / "tokens", tokens))
    assert book.name_of(f"{SCHEME} {tokens['alice']}") == "alice"
    assert book.name_of(f"bearer {tokens['bob']}") == "bob"  # the scheme is not case-sensitive (RFC 7235)
    assert bearer(tokens["bob"]) == {AUTH_HEADER: f"{SCHEME} {tokens['bob']}"}
    for header in (None, "", SCHEME, f"{SCHEME} ", f"{SCHEME} {token()}", f"Basic {tokens['alice']}",
                   tokens["alice"], f"{SCHEME} {tokens['alice']}x", f"{SCHEME} {tokens['alice'][:-1]}",
                   f"{SCHEME} {tokens['alice']}\u00e9", f"{SCHEME} \udcff{tokens['alice']}"):
        assert book.name_of(header) is None, header


def test_every_known_token_is_compared_in_constant_time(tmp_path, monkeypatch):
    """Whether the token matches the first entry, the last or none, every entry is compared with
    hmac.compare_digest on equal-length digests: neither the time nor an early exit says how close a guess came."""
    tokens = {f"client{i}": token() for i in range(5)}
    book = TokenBook.from_file(token_file(tmp_path / "tokens", tokens))
    calls = []
    real = hmac.compare_digest

    def counting(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for header, expected in ((tokens["client0"], "client0"), (tokens["client4"], "client4"), (token(), None),
                             ("x", None)):
        calls.clear()
        assert book.name_of(f"{SCHEME} {header}") == expected
        assert len(calls) == len(tokens) and {a for a, _ in calls} == {b for _, b in calls} == {32}, calls


def test_a_reload_revokes_at_once_and_a_broken_file_keeps_the_tokens_in_force(tmp_path):
    tokens = {"alice": token(), "bob": token()}
    path = token_file(tmp_path / "tokens", tokens)
    book = TokenBook.from_file(path)
    token_file(path, {"alice": tokens["alice"]})
    assert book.reload() == ["alice"]
    assert book.name_of(f"{SCHEME} {tokens['bob']}") is None and book.name_of(f"{SCHEME} {tokens['alice']}") == "alice"
    path.write_text("alice\n")
    with pytest.raises(TokenFileError, match="line 1"):
        book.reload()
    assert book.name_of(f"{SCHEME} {tokens['alice']}") == "alice"


def test_a_login_is_a_name_and_its_own_secret(tmp_path):
    logins = {"alice": token(), "bob": token()}
    book = TokenBook.from_file(token_file(tmp_path / "logins", logins), what="password")
    assert book.check_login("alice", logins["alice"])
    assert not book.check_login("alice", logins["bob"]) and not book.check_login("bob", logins["alice"])
    assert not book.check_login("mallory", logins["alice"]) and not book.check_login("alice", "")
    (tmp_path / "bad").write_text("alice:short\n")
    with pytest.raises(TokenFileError, match="the password of 'alice'"):
        TokenBook.from_file(tmp_path / "bad", what="password")


# --------------------------------------------------------------------------- the rate


class Clock:
    """Time that moves only when the test says so: the bucket arithmetic, without waiting."""

    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_each_name_has_its_own_bucket_of_rate_and_burst():
    clock = Clock()
    limiter = RateLimiter(rate=4, burst=3, clock=clock)
    assert [limiter.retry_after("mallory") for _ in range(3)] == [0, 0, 0]  # the burst
    assert limiter.retry_after("mallory") == pytest.approx(0.25)  # one more comes 1 / rate later
    assert limiter.retry_after("bob") == 0  # another client's share is untouched
    clock.now += 0.25
    assert limiter.retry_after("mallory") == 0 and limiter.retry_after("mallory") == pytest.approx(0.25)
    clock.now += 10  # a long pause refills no more than the burst
    assert [limiter.retry_after("mallory") for _ in range(4)][-1] > 0
    with pytest.raises(ValueError):
        RateLimiter(rate=0, burst=1)


def test_refusals_are_logged_once_a_second_per_client_with_the_count_left_out(tmp_path):
    """A flood refused at the door thousands of times a second writes a line a second, not one per request."""
    clock = Clock()
    log = AccessLog(tmp_path / "access.log", clock=clock)
    for _ in range(500):
        log.write("http", "mallory", "POST /v2/models/dcgan/infer", 429, "10.0.0.7")
        log.write("http", "bob", "POST /v2/models/dcgan/infer", 200, "10.0.0.8")  # answered: every one
    log.write("grpc", None, "ModelInfer", "UNAUTHENTICATED", "ipv4:10.0.0.9:5000")
    clock.now += 1.0
    log.write("http", "mallory", "POST /v2/models/dcgan/infer", 429, "10.0.0.7")
    log.close()
    lines = (tmp_path / "access.log").read_text().splitlines()
    assert len(lines) == 500 + 3 and sum(" bob " in line for line in lines) == 500
    mallory = [line for line in lines if " mallory " in line]
    assert mallory[0].endswith(" 429 10.0.0.7") and mallory[1].endswith(" 429 10.0.0.7 (+499 like it)"), mallory
    assert any(line.endswith(" grpc  - ModelInfer UNAUTHENTICATED ipv4:10.0.0.9:5000"[1:]) for line in lines)


def test_retry_after_rounds_up_to_whole_seconds():
    assert [retry_after_header(s) for s in (0.01, 1.0, 1.2, 7.9)] == ["1", "1", "2", "8"]


# --------------------------------------------------------------------------- TLS files


def test_tls_files_are_checked_before_anything_listens(tmp_path):
    certs = make_certs(tmp_path / "certs")
    assert TlsFiles.of(None, None) is None
    assert TlsFiles.of(certs.cert, certs.key).server_context() is not None
    other = make_certs(tmp_path / "other")
    for cert, key, words in [(certs.cert, None, "go together"), (None, certs.key, "go together"),
                             (tmp_path / "missing.pem", certs.key, "--tls-cert"),
                             (certs.cert, other.key, "matching private key"),
                             (certs.key, certs.cert, "not a PEM certificate")]:
        with pytest.raises(TlsError, match=words) as e:
            TlsFiles.of(cert, key)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- the commands


def _serve(*args: str):
    from ganexport.serving.serve_cli import serve

    return CliRunner().invoke(serve, list(args))


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_serve_refuses_to_listen_openly_without_a_token_file(tmp_path, host):
    """First, in one line naming the flag to add: not even the (missing) repository is looked at."""
    result = _serve("--repository", str(tmp_path / "missing"), "--host", host)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"error: --host {host} "), result.stderr
    assert "--token-file FILE" in result.stderr and "--insecure" in result.stderr
    # --insecure: on to the next check (the warning itself: tests/test_security.py, on a real repository)
    insecure = _serve("--repository", str(tmp_path / "missing"), "--host", host, "--insecure")
    assert insecure.exit_code == 2 and "does not exist" in insecure.stderr, insecure.stderr
    assert "--token-file" not in insecure.stderr


def test_serve_checks_its_access_options_in_one_line(tmp_path):
    secret = token()
    good = token_file(tmp_path / "tokens", {"alice": secret})
    bad = tmp_path / "bad"
    bad.write_text(f"alice {secret}\n")
    certs = make_certs(tmp_path / "certs")
    for args, words in [(["--rate-limit", "5"], "--rate-limit is per token: it needs --token-file"),
                        (["--token-file", str(bad)], f"--token-file {bad}, line 1: expected name:token"),
                        (["--token-file", str(tmp_path / "none")], "no such file"),
                        (["--token-file", str(good), "--tls-cert", str(certs.cert)], "--tls-key go together"),
                        (["--token-file", str(good), "--tls-cert", str(certs.key), "--tls-key", str(certs.key)],
                         "not a PEM certificate")]:
        result = _serve("--repository", str(tmp_path / "missing"), *args)
        assert result.exit_code == 2 and words in result.stderr, (args, result.output)
        assert secret not in result.output


def test_the_token_file_comes_from_the_environment_variable_the_option_names(tmp_path):
    from ganexport.serving.serve_cli import serve

    option = next(p for p in serve.params if p.name == "token_file")
    assert option.envvar == auth.TOKEN_FILE_ENV and option.show_envvar
    bad = tmp_path / "bad"
    bad.write_text("nobody\n")
    result = CliRunner().invoke(serve, ["--repository", str(tmp_path / "missing"), "--host", "0.0.0.0"],
                                env={auth.TOKEN_FILE_ENV: str(bad)})
    assert result.exit_code == 2 and f"--token-file {bad}, line 1" in result.stderr, result.output  # read, not refused


def test_demo_refuses_to_listen_openly_without_a_login_file(tmp_path):
    from ganexport.demo.demo_cli import demo

    result = CliRunner().invoke(demo, ["--repository", str(tmp_path / "missing"), "--host", "0.0.0.0"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.output
    assert "--host 0.0.0.0" in result.stderr and "--auth-file FILE" in result.stderr and "--insecure" in result.stderr
    bad = tmp_path / "logins"
    bad.write_text("alice:short\n")
    result = CliRunner().invoke(demo, ["--repository", str(tmp_path / "missing"), "--host", "0.0.0.0",
                                       "--auth-file", str(bad)])
    assert result.exit_code == 1 and "the password of 'alice'" in result.stderr, result.output


@pytest.mark.parametrize("mode, warned", [(0o644, True), (0o600, False)])
def test_a_secrets_file_others_can_read_is_warned_about(tmp_path, mode, warned):
    """The token file of serve and the login file of the demo alike, before anything else fails."""
    from ganexport.demo.demo_cli import demo

    secrets_file = token_file(tmp_path / "secrets", {"alice": token()})
    secrets_file.chmod(mode)
    for result in (_serve("--repository", str(tmp_path / "missing"), "--token-file", str(secrets_file)),
                   CliRunner().invoke(demo, ["--repository", str(tmp_path / "missing"), "--auth-file",
                                             str(secrets_file)])):
        assert result.exit_code != 0 and "missing" in result.stderr, result.output  # it went on to the repository
        assert (f"{secrets_file} is readable by other users (chmod 600" in result.stderr) == warned, result.stderr


def test_the_refusal_message_never_varies_with_what_was_wrong():
    assert "\n" not in UNAUTHENTICATED and AUTH_HEADER.title() in UNAUTHENTICATED and SCHEME in UNAUTHENTICATED
