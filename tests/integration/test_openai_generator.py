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
