"""`longchat serve`: the loaded model behind an OpenAI-compatible HTTP API (see longchat/serve/)."""

from __future__ import annotations

from typing import List, Optional

import typer

from longchat.cli.app import app
from longchat.cli.common import DeviceOpt, ModelOpt, ProfileOpt, SetOpt, note, open_runner_cli, usage_error


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback needs --api-key."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port to listen on (0: any free one, printed on stderr)."),
    profile: str = ProfileOpt,
    model: Optional[str] = ModelOpt,
    device: Optional[str] = DeviceOpt,
    set_: Optional[List[str]] = SetOpt,
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="LONGCHAT_API_KEY", show_default=False, help="Require `Authorization: Bearer KEY` on every request (/health excepted)."),
    max_queue: int = typer.Option(16, "--max-queue", min=0, help="Requests that may wait for the model; one more gets 429 with Retry-After."),
    max_body_mb: float = typer.Option(32.0, "--max-body-mb", min=0.001, help="Largest request body in MB (413 past it)."),
) -> None:
    """Serve the model over an OpenAI-compatible HTTP API: GET /v1/models, POST /v1/chat/completions, GET /health.

    One model, many clients: requests queue in arrival order and run one at a time. Named
    memories are listed as models too (MODEL@memory:NAME). longchat's own options travel in the
    body's "longchat" field: {"longchat": {"profile", "memory", "session", "compress"}}.
    SIGINT or SIGTERM stops it (exit 0). More: docs/serve.md.

    Example: longchat serve --port 8000, then any OpenAI client with base URL http://127.0.0.1:8000/v1
    """
    from longchat.serve import check_host, listen, serve as serve_forever

    from longchat.runtime.remote import is_remote

    if is_remote(model):
        raise usage_error("serve runs a local model; point clients at the engine itself, or use "
                          "--model openai:... with ask, chat or summarize")
    check_host(host, api_key)
    sock = listen(host, port)
    runner = open_runner_cli(profile, model, device, set_)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    note(f"serving {runner.model.name} (profile {runner.profile.name}) at http://{shown}:{bound}/v1"
         + (" with an API key" if api_key else "") + "; Ctrl-C stops")
    serve_forever(runner, sock, api_key=api_key, max_queue=max_queue, max_body_mb=max_body_mb, log=note)
