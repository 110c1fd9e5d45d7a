"""``honed serve``."""

from __future__ import annotations

import json
import os

import typer

from honed.cli.progress import out_console

LOOPBACK = ("127.0.0.1", "localhost", "::1")  # any other --host can be reached from the network


def serve(
    bundle: str = typer.Argument(..., help="A bundle folder or .zip (see `honed export`); local paths only."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 exposes the server to the network."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    max_batch: int = typer.Option(32, min=1, help="Images per model call; 1 turns dynamic batching off."),
    max_wait_ms: float = typer.Option(5.0, min=0, help="How long a queued image waits for others to join its batch."),
    max_queue: int = typer.Option(256, min=1, help="Images waiting for the model before requests get 429."),
    max_images: int = typer.Option(64, min=1, help="Images in one request."),
    max_body_mb: float = typer.Option(20.0, help="Largest request body in MiB (413 above it)."),
    max_pixels: int = typer.Option(89_478_485, min=1, help="Largest image in pixels, read from its header (422)."),
    timeout_s: float = typer.Option(30.0, help="Seconds a request may wait for its answer (504 after)."),
    max_client_requests: int = typer.Option(8, min=1, help="Requests one client (token or address) may have in "
                                            "flight (429 above it)."),
    max_client_queue: int = typer.Option(0, min=0, help="Images one client may have queued or predicting (429 "
                                         "above it); 0: half of --max-queue, at least --max-images."),
    token_file: str = typer.Option("", help="File of bearer tokens, one a line: /predict and /metadata then need "
                                   "'Authorization: Bearer TOKEN' (else 401). Default: $HONED_SERVE_TOKEN, if set."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    backend: str = typer.Option("torch", help="torch, or onnx to run the bundle's model.onnx in ONNX Runtime."),
    tta: str = typer.Option("", help="Test-time augmentation views, e.g. flip; 'none' turns the bundle's own "
                            "setting off; empty keeps it."),
    no_calibration: bool = typer.Option(False, "--no-calibration", help="Serve raw probabilities: leave out the "
                                        "temperature fitted on the validation split."),
    workers: int = typer.Option(1, min=1, help="Server processes, each with its own model and batcher."),
    log_level: str = typer.Option("info", help="uvicorn log level: critical, error, warning, info, debug."),
) -> None:
    """Serve a bundle over HTTP: POST /predict, GET /health, /metadata, /metrics, and a page at /."""
    import uvicorn

    from honed.serve.app import ENV_CONFIG, app_from_bundle
    from honed.serve.auth import ENV_TOKEN, read_tokens
    from honed.serve.limits import ServeSettings

    settings = ServeSettings(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                             max_images=max_images, max_body_mb=max_body_mb, max_pixels=max_pixels,
                             timeout_s=timeout_s, max_client_requests=max_client_requests,
                             max_client_queue=max_client_queue)
    tokens = read_tokens(token_file or None)
    console = out_console(stderr=True)
    if not tokens and host not in LOOPBACK:
        console.print(f"[yellow]warning:[/yellow] serving on {host} without a token: anyone who can reach this "
                      f"port can call /predict. Set --token-file or ${ENV_TOKEN}, or bind 127.0.0.1.")
    if workers == 1:
        app = app_from_bundle(bundle, settings=settings, device=device, backend=backend, tta=tta or None,
                              tokens=tokens, calibrate=not no_calibration)
        console.print(f"serving {app.state.model.name} at http://{host}:{port} (page at /, docs at /docs"
                      f"{'; /predict and /metadata need the bearer token' if tokens else ''})")
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    app_from_bundle(bundle, settings=settings, device=device, backend=backend, tta=tta or None,
                    calibrate=not no_calibration)  # fail here, once
    os.environ[ENV_CONFIG] = json.dumps({"bundle": bundle, "settings": settings.to_dict(), "device": device,
                                         "backend": backend, "tta": tta or None,  # never a token: a path
                                         "token_file": token_file or None, "calibrate": not no_calibration})
    console.print(f"serving {bundle} at http://{host}:{port} with {workers} worker processes")
    uvicorn.run("honed.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level)
