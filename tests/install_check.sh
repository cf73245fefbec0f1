#!/usr/bin/env bash
# The install as users do it: the "Install with pip" commands of docs/getting-started.md, run verbatim, checked between lines.
#
#   tests/install_check.sh          # `make install-check`; `make test` runs it after pytest
#
# The commands are read from docs/getting-started.md (the fenced blocks after the `install-check:` markers), so the page
# cannot drift from what CI runs. They run one line at a time in one shell, each line's output in a log, with
# these checks in between:
#   - the wheel carries every released checkpoint (`ganexport weights` lists each with the sha256 of weights/);
#   - from an empty directory, `ganexport build --model cgan` takes the released weights: it trains nothing,
#     writes no runs/ and no judge into the user cache;
#   - `ganexport serve &` answers a tritonclient HTTP request, `ganexport infer` writes its picture, and the
#     server stops cleanly on the page's `kill %1`;
#   - a serving-only venv (no torch: `import torch` must fail) serves the repository the first venv built.
# Isolation: the wheel is built from a copy of the working tree (git's tracked and unignored files), HOME is a
# temporary folder (so `~/...` in the page is), ports are free ones handed to serve and infer through
# GANEXPORT_HTTP_PORT / _GRPC_PORT / _METRICS_PORT; pip's cache is kept, so the second torch install is quick.
# PYTHON picks the interpreter (default python3); KEEP_WORK=1 keeps the temporary folder.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
START=$SECONDS
REAL_PY=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ganexport-install-check.XXXXXX")
LOGS=$WORK/logs
SERVE_PID=
mkdir -p "$LOGS" "$WORK/home" "$WORK/bin" "$WORK/src"

cleanup() {
    local rc=$?
    if [ -n "$SERVE_PID" ] && kill -0 "$SERVE_PID" 2>/dev/null; then
        kill -TERM "$SERVE_PID" 2>/dev/null || true
        wait "$SERVE_PID" 2>/dev/null || true
    fi
    if [ "${KEEP_WORK:-0}" = 1 ] || [ "$rc" != 0 ]; then
        echo "install-check: logs kept in $LOGS" >&2
        [ "${KEEP_WORK:-0}" = 1 ] || find "$WORK" -mindepth 1 -maxdepth 1 ! -name logs -exec rm -rf {} +
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

say() { printf 'install-check [%3ds]: %s\n' $((SECONDS - START)) "$*"; }
fail() {
    echo "install-check: FAIL: $*" >&2
    [ -n "${LAST_LOG:-}" ] && [ -f "$LAST_LOG" ] && { echo "--- last lines of $LAST_LOG" >&2; tail -n 25 "$LAST_LOG" >&2; }
    exit 1
}

# --- the page's blocks
block() {  # the fenced block after <!-- install-check: NAME -->
    awk -v marker="<!-- install-check: $1 -->" '
        $0 == marker { found = 1; next }
        found && /^```/ { if (inside) exit; inside = 1; next }
        inside { print }' "$ROOT/docs/getting-started.md"
}
USER_BLOCK=$(block train-and-serve)
SERVE_BLOCK=$(block serve-only)
[ -n "$USER_BLOCK" ] && [ -n "$SERVE_BLOCK" ] || fail "docs/getting-started.md has no install-check blocks"

# --- isolation: a copy of the working tree, a temporary HOME, the chosen python3 first on PATH, free ports
(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --files-from=- --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$WORK/src"
[ -f "$WORK/src/pyproject.toml" ] || fail "could not copy the working tree (is $ROOT a git checkout?)"
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pip}
for conf in "$HOME/.config/pip/pip.conf" "$HOME/.pip/pip.conf"; do
    if [ -z "${PIP_CONFIG_FILE:-}" ] && [ -f "$conf" ]; then export PIP_CONFIG_FILE=$conf; fi
done
export PIP_NO_COMPILE=1 PIP_PROGRESS_BAR=off  # no .pyc pass over torch and gradio: a minute less on 2 cores
ln -s "$REAL_PY" "$WORK/bin/python3"
printf '#!/bin/sh\nexec "%s" -m pip "$@"\n' "$REAL_PY" > "$WORK/bin/pip"  # until a venv is active: that python's
chmod +x "$WORK/bin/pip"
export PATH="$WORK/bin:$PATH" HOME="$WORK/home"
unset GANEXPORT_WEIGHTS GANEXPORT_CACHE VIRTUAL_ENV
read -r HTTP GRPC METRICS < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()')
export GANEXPORT_HTTP_PORT=$HTTP GANEXPORT_GRPC_PORT=$GRPC GANEXPORT_METRICS_PORT=$METRICS

# --- checks run after particular lines of the page
request() {  # one tritonclient HTTP request to cgan, shapes from the server's own metadata
    python - "127.0.0.1:$HTTP" <<'EOF'
import sys

import numpy as np
import tritonclient.http as httpclient

client = httpclient.InferenceServerClient(sys.argv[1])
meta = {t["name"]: t for t in client.get_model_metadata("cgan")["inputs"]}
z = httpclient.InferInput("z", [2, *meta["z"]["shape"][1:]], "FP32")
z.set_data_from_numpy(np.random.default_rng(0).standard_normal((2, *meta["z"]["shape"][1:])).astype(np.float32))
label = httpclient.InferInput("label", [2, 1], "INT64")
label.set_data_from_numpy(np.array([[3], [7]], dtype=np.int64))
images = client.infer("cgan", [z, label]).as_numpy("image")
assert images.dtype == np.uint8 and images.shape[0] == 2 and images.std() > 0, (images.dtype, images.shape)
print("tritonclient: cgan", images.shape, images.dtype)
client.close()
EOF
}

wait_ready() {
    local deadline=$((SECONDS + 180))
    until grep -q " ready in " "$SERVE_LOG"; do
        kill -0 "$SERVE_PID" 2>/dev/null || { LAST_LOG=$SERVE_LOG; fail "ganexport serve exited before it was ready"; }
        [ $SECONDS -lt $deadline ] || fail "ganexport serve not ready after 180 s"
        sleep 1
    done
    say "serve ready on 127.0.0.1:$HTTP (gRPC $GRPC)"
}

after() {  # $1: the line just run, $2: its log
    local line=$1 log=$2
    case "$line" in
        "pip wheel "*)
            local wheel
            wheel=$(ls "$WORK"/src/dist/ganexport-*.whl)
            say "wheel $(basename "$wheel"): $(du -k "$wheel" | cut -f1) KiB" ;;
        "pip install \"\$WHEEL[serve]\""*)
            if python -c "import torch" 2>/dev/null; then fail "the serving-only venv can import torch"; fi
            say "serving-only venv: no torch" ;;
        "ganexport weights"*)
            local f sum
            for f in "$WORK"/src/weights/*.safetensors; do
                sum=$(sha256sum "$f" | cut -d' ' -f1)
                grep -q "$(basename "$f") .* $sum" "$log" || fail "ganexport weights: no $(basename "$f") with sha256 $sum"
            done
            grep -q "site-packages" "$log" || fail "ganexport weights: not found in the installed package"
            say "the wheel carries every released checkpoint, with the checkout's sha256" ;;
        "ganexport build "*)
            grep -q "(the released weights, the installed package ganexport.weights" "$log" \
                || fail "build did not take the released weights"
            if grep -qi "training" "$log"; then fail "build trained something"; fi
            [ ! -e runs ] || fail "build wrote runs/ in $(pwd)"
            [ ! -e "$HOME/.cache/ganexport" ] || fail "build wrote into the user cache ($HOME/.cache/ganexport)"
            say "build took the released weights: no training, no runs/, no cache" ;;
        "ganexport serve &"*)
            SERVE_PID=$SERVE_STARTED
            wait_ready
            request > "$LOGS/request-$SERVE_PID.log" 2>&1 || { LAST_LOG="$LOGS/request-$SERVE_PID.log"; fail "request"; }
            say "$(tail -n 1 "$LOGS/request-$SERVE_PID.log")" ;;
        "ganexport infer "*)
            local out
            out=$(sed -n 's/.* -o \([^ ]*\).*/\1/p' <<<"$line")
            [ -s "$out" ] || fail "infer wrote no $out"
            say "infer: $(tail -n 1 "$log")" ;;
        "kill %1"*)
            local rc=0
            wait "$SERVE_PID" || rc=$?
            grep -q "^stopped" "$SERVE_LOG" || { LAST_LOG=$SERVE_LOG; fail "serve did not stop cleanly (exit $rc)"; }
            [ "$rc" = 0 ] || { LAST_LOG=$SERVE_LOG; fail "serve exited $rc on kill"; }
            SERVE_PID=
            say "serve stopped cleanly" ;;
    esac
}

run_block() {  # $1: name, $2: the block; every line verbatim, in this shell
    local line n=0
    while IFS= read -r line; do
        [[ -z "${line// }" || "$line" =~ ^[[:space:]]*# ]] && continue
        n=$((n + 1))
        LAST_LOG="$LOGS/$1-$n.log"
        say "\$ $line"
        SERVE_STARTED=
        eval "$line" > "$LAST_LOG" 2>&1 || fail "exit status $? from: $line"
        case "$line" in "ganexport serve &"*) SERVE_STARTED=$!; SERVE_LOG=$LAST_LOG ;; esac
        after "$line" "$LAST_LOG"
    done <<<"$2"
}

main() {
    cd "$WORK/src"
    run_block train-and-serve "$USER_BLOCK"
    run_block serve-only "$SERVE_BLOCK"
    say "passed in $((SECONDS - START)) s"
}
main; exit  # on one line: bash reads a script as it runs, so an edit to this file cannot change a run under way
