"""An OpenAI-style completions endpoint that answers at once (every log-probability 0), with
every other path (the tokenizer endpoints lm-eval's remote tokenizer calls) forwarded to a real
`valuelens serve`. Pointing lm-eval's `local-completions` at it measures the time lm-eval spends
on its own: start-up, building the task, tokenizing, parsing answers, writing results — a floor
under any server's wall time on the same command (benches/results/2026-12-05-two-choice-bounds.md).

usage: python3 scripts/lm-eval-instant-server.py http://127.0.0.1:PORT_OF_SERVE LISTEN_PORT
Binds to 127.0.0.1 only. Forwarded calls go one at a time through urllib, so lm-eval's
tokenizing phase is slower here than against the server itself: read its time from a run
against the server.
"""
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

UPSTREAM = sys.argv[1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body, content_type="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def forward(self, method):
        length = int(self.headers.get("Content-Length", 0))
        data = self.rfile.read(length) if length else None
        request = urllib.request.Request(
            UPSTREAM + self.path, data=data, method=method,
            headers={"Content-Type": self.headers.get("Content-Type", "application/json")})
        with urllib.request.urlopen(request) as answer:
            self.reply(answer.status, answer.read(),
                       answer.headers.get("Content-Type", "application/json"))

    def do_GET(self):
        self.forward("GET")

    def do_POST(self):
        if self.path != "/v1/completions":
            return self.forward("POST")
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        prompts = request["prompt"]
        if prompts and isinstance(prompts[0], int):
            prompts = [prompts]
        choices = []
        for index, prompt in enumerate(prompts):
            # echo with max_tokens=1: one entry per prompt token and one for the generated token
            n = len(prompt) + 1
            choices.append({"index": index, "text": "", "finish_reason": "length", "logprobs": {
                "tokens": ["x"] * n, "token_logprobs": [None] + [0.0] * (n - 1),
                "top_logprobs": [None] + [{"x": 0.0}] * (n - 1), "text_offset": [0] * n}})
        body = {"id": "instant", "object": "text_completion", "model": request.get("model"),
                "choices": choices}
        self.reply(200, json.dumps(body).encode())


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), Handler).serve_forever()
