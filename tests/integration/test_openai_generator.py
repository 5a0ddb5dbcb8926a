"""Generation elsewhere (issue 12 item 5): traces from an OpenAI-compatible server, scored by
the local model. The server is a real HTTP server on a free port (http.server in a thread)."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from backend.cli import main
from backend.engine.openai_generator import GenerationError, generate_openai
from backend.engine.trajectory import GenerationSettings
from backend.errors import InputError
from backend.pipeline.run import RunRequest, run_question

REASONING = "Maya has 5 apples. Two bags of 4 add 8, so 13. She gives 6 away, leaving 7. She eats 1, so 6."
ANSWER_TEXT = "She has \\boxed{6} apples."


class _ChatServer:
    """A chat-completions endpoint that records every request body it gets."""

    def __init__(self, status: int = 200, separate_reasoning: bool = True):
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                received.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
                if status != 200:
                    self.send_response(status)
                    self.end_headers()
                    self.wfile.write(b'{"error": "model overloaded"}')
                    return
                message = (
                    {"role": "assistant", "content": ANSWER_TEXT, "reasoning_content": REASONING}
                    if separate_reasoning
                    else {"role": "assistant", "content": f"<think>{REASONING}</think>{ANSWER_TEXT}"}
                )
                reply = json.dumps(
                    {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(reply.encode())

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("separate_reasoning", [True, False])
def test_generate_openai_speaks_chat_completions(separate_reasoning, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = GenerationSettings(max_new_tokens=77, temperature=0.6, top_p=0.95, seed=3)
    with _ChatServer(separate_reasoning=separate_reasoning) as server:
        text = generate_openai(server.url + "/", "served-model", "  How many?  ", settings)
    assert text == f"<think>{REASONING}</think>{ANSWER_TEXT}"
    (req,) = server.received
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"] == {
        "model": "served-model",
        "messages": [{"role": "user", "content": "How many?"}],
        "max_tokens": 77,
        "temperature": 0.6,
        "seed": 3,
        "top_p": 0.95,
    }


def test_run_scores_a_remote_trace_with_the_local_model(store, tiny_llama):
    with _ChatServer() as server:
        req = RunRequest(
            question="Maya has 5 apples...",
            answer="6",
            model=tiny_llama.name,
            generator="openai",
            base_url=server.url,
            generator_model="served-model",
        )
        first = run_question(req, store, loaded=tiny_llama)
        again = run_question(req, store, loaded=tiny_llama)
    run = store.open(first.key)
    assert run.meta["trajectory"] == REASONING
    assert run.meta["generator"] == {"kind": "openai", "base_url": server.url, "model": "served-model"}
    assert run.meta["model"]["name"] == tiny_llama.name  # scored locally
    assert (run.meta["predicted_answer"], run.meta["correct"]) == ("6", True)
    assert run.meta["summary"]["n_tokens"] == len(run.tokens) - 1 > 10
    assert again.cached and len(server.received) == 1  # the request cache spares the server


def test_cli_run_with_generator_device_and_dtype(tiny_model_dir, tmp_path):
    out, err = io.StringIO(), io.StringIO()
    with _ChatServer() as server, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            ["--cache-dir", str(tmp_path), "run", "--question", "Maya?", "--answer", "6", "--model", tiny_model_dir]
            + ["--generator", "openai", "--base-url", server.url, "--generator-model", "m"]
            + ["--device", "cpu", "--dtype", "float32", "--quiet", "--max-new-tokens", "32"]
        )
    assert code == 0, err.getvalue()
    from backend.store.runs import RunStore

    meta = RunStore(tmp_path).open(out.getvalue().split()[-1]).meta
    assert (meta["model"]["device"], meta["model"]["dtype"], meta["trajectory"]) == ("cpu", "float32", REASONING)
    assert server.received[0]["body"]["max_tokens"] == 32


def test_generator_failures_are_one_line_errors():
    settings = GenerationSettings()
    with _ChatServer(status=503) as server:
        with pytest.raises(GenerationError, match=r"answered HTTP 503: .*model overloaded"):
            generate_openai(server.url, "m", "q", settings)
        closed_url = server.url
    with pytest.raises(GenerationError, match="cannot reach generator"):
        generate_openai(closed_url, "m", "q", settings, timeout_s=5)
    with pytest.raises(InputError, match="not an http"):
        RunRequest(question="q", generator="openai", base_url="ftp://x", generator_model="m").validate()
    with pytest.raises(InputError, match="needs --generator-model"):
        RunRequest(question="q", generator="openai", base_url="http://h/v1").validate()
    with pytest.raises(InputError, match="unknown --dtype"):
        RunRequest(question="q", dtype="float8").validate()
    with pytest.raises(InputError, match="unknown --device"):
        RunRequest(question="q", device="tpu").validate()


# ----------------------------------------------------------------------------- hostile servers (issue 27 items 3, 8)
class _HostileServer:
    """One endpoint whose reply ``behaviour(handler)`` writes; every request (path, auth) is recorded."""

    def __init__(self, behaviour):
        received: list[dict] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                received.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization")})
                try:
                    behaviour(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on us: what the test wants

            do_POST = do_GET = _serve  # noqa: N815 (http.server's names)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _ok_reply(handler):
    body = json.dumps({"choices": [{"message": {"content": f"<think>{REASONING}</think>{ANSWER_TEXT}"}}]}).encode()
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_redirect_is_not_followed_and_the_key_stays_home(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    with _HostileServer(_ok_reply) as elsewhere:

        def redirect(handler):
            handler.send_response(302)
            handler.send_header("Location", f"http://127.0.0.1:{elsewhere.port}/v1/chat/completions")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with _HostileServer(redirect) as first:
            with pytest.raises(GenerationError) as info:
                generate_openai(first.url, "m", "q", GenerationSettings())
    message = str(info.value)
    assert f"HTTP 302, a redirect to 127.0.0.1:{elsewhere.port}; not followed" in message and "\n" not in message
    assert "sk-secret" not in message
    assert first.received == [{"method": "POST", "path": "/v1/chat/completions", "auth": "Bearer sk-secret"}]
    assert elsewhere.received == []  # neither the request nor the key reached the second port


def test_credentials_in_the_base_url_are_refused_before_any_request():
    with _HostileServer(_ok_reply) as server:
        with_user = server.url.replace("http://", "http://user:pass@")
        with pytest.raises(InputError, match=r"must not carry a user name or password .*OPENAI_API_KEY"):
            generate_openai(with_user, "m", "q", GenerationSettings())
        with pytest.raises(InputError, match="user name or password"):
            RunRequest(question="q", generator="openai", base_url=with_user, generator_model="m").validate()
    assert server.received == []


def test_a_trickling_server_meets_the_total_deadline():
    stop = threading.Event()

    def trickle(handler):  # headers at once, then one byte every second, for ever
        handler.send_response(200)
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        while not stop.is_set():
            handler.wfile.write(b" ")
            handler.wfile.flush()
            stop.wait(1.0)

    def trickle_headers(handler):  # the status line itself, one byte every second
        for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n":
            if stop.is_set():
                return
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            stop.wait(1.0)

    try:
        for behaviour in (trickle, trickle_headers):
            with _HostileServer(behaviour) as server:
                with pytest.raises(GenerationError, match=r"did not answer within 2 s \(--generator-deadline\)"):
                    generate_openai(server.url, "m", "q", GenerationSettings(), timeout_s=2)
    finally:
        stop.set()


def test_an_oversize_reply_is_refused_while_it_arrives():
    def huge_stream(handler):  # 10 MB of reasoning_content, chunked: no Content-Length to refuse first
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        piece = b"a" * 65536
        head = b'{"choices": [{"message": {"reasoning_content": "'
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(head), head))
        for _ in range(160):
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        handler.wfile.write(b"0\r\n\r\n")

    def announced(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", str(10 * 1024 * 1024))
        handler.end_headers()
        handler.wfile.write(b"{")

    with _HostileServer(huge_stream) as server:
        with pytest.raises(
            GenerationError, match=r"sent more than 1 MB \(--generator-max-mb\); refused while it arrived"
        ):
            generate_openai(server.url, "m", "q", GenerationSettings(), max_response_mb=1)
    with _HostileServer(announced) as server:
        with pytest.raises(GenerationError, match=r"announced a reply of 10.0 MB, over the limit of 8 MB"):
            generate_openai(server.url, "m", "q", GenerationSettings(), max_response_mb=8)


def test_cli_refuses_bad_transport_limits_in_one_line(tmp_path):
    for flag, value in (("--generator-deadline", "0"), ("--generator-max-mb", "nan")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(
                ["--cache-dir", str(tmp_path), "run", "--question", "q", "--generator", "openai"]
                + ["--base-url", "http://127.0.0.1:9/v1", "--generator-model", "m", flag, value]
            )
        assert code == 2 and err.getvalue().count("\n") == 1 and f"{flag} {value}" in err.getvalue()


def test_a_failing_generator_is_found_before_the_weights_load(tiny_model_dir, tmp_path, monkeypatch):
    from backend.engine import provider
    from backend.store.runs import RunStore

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were loaded before the generator answered")

    monkeypatch.setattr(provider, "provide", no_weights)
    with _ChatServer(status=503) as server:
        req = RunRequest(
            question="Maya?",
            answer="6",
            model=tiny_model_dir,
            generator="openai",
            base_url=server.url,
            generator_model="m",
        )
        with pytest.raises(GenerationError, match="answered HTTP 503"):
            run_question(req, RunStore(tmp_path / "cache"))
