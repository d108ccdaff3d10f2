"""Terminal UI for campaigns: one rich progress bar a device, campaigns in parallel threads."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .errors import EdgecostError

log = logging.getLogger(__name__)


def run_profiles(
    devices: list[str],
    target_kwargs: dict[str, Any],
    *,
    budget_minutes: float,
    settings,
    new: bool,
    max_items: int | None,
    train: bool,
    prefetch: bool | None = None,
    as_json: bool,
) -> list[dict[str, Any]]:
    """Profile each device in its own thread, sharing one store; returns one summary per device.

    Ctrl-C stops every campaign after its current model; what was measured stays stored.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from . import api
    from .store import Store

    store = Store()
    stop = threading.Event()
    results: dict[str, dict[str, Any]] = {}
    console = Console(stderr=True, highlight=False)
    progress = Progress(
        TextColumn("[bold]{task.fields[device]}[/bold]"),
        BarColumn(),
        TextColumn("{task.fields[ok]} ok, {task.fields[failed]} failed"),
        TextColumn("[dim]{task.fields[last]}[/dim]"),
        TimeRemainingColumn(),
        console=console,
        disable=as_json,
        transient=False,
    )
    budget_s = budget_minutes * 60.0
    tasks = {d: progress.add_task(d, total=budget_s, device=d, ok=0, failed=0, last="") for d in devices}

    def work(name: str) -> None:
        task = tasks[name]
        t0 = time.monotonic()

        def on_event(ev) -> None:
            if ev.kind in ("measured", "revisited", "failed"):
                last = f"{ev.family} {ev.median_ms:.2f} ms" if ev.median_ms is not None else f"{ev.family} failed"
                if ev.kind == "revisited":
                    last += " (again)"
                progress.update(task, completed=min(budget_s, time.monotonic() - t0), ok=ev.done_ok,
                                failed=ev.done_failed, last=last)
            elif ev.kind in ("warning", "info") and not as_json:
                style = "yellow" if ev.kind == "warning" else "dim"
                progress.console.print(f"[{style}]{name}: {ev.message}[/{style}]")

        try:
            r = api.profile(name, **target_kwargs, budget_minutes=budget_minutes, settings=settings, new=new,
                            max_items=max_items, train=train, store=store, on_event=on_event, stop=stop,
                            prefetch=prefetch)
            summary = r.to_dict() if r is not None else {}
            summary["device"] = name
            camp = store.campaign(r.campaign_id) if r is not None else None
            if camp:
                summary["campaign_total_ok"] = camp["measured_ok"]
                summary["campaign_total_failed"] = camp["measured_failed"]
            if train and r is not None:
                summary["measurement_consistency"] = _consistency_of_saved_profile(name, target_kwargs)
            results[name] = summary
        except EdgecostError as exc:
            results[name] = {"device": name, "error": str(exc), "error_kind": type(exc).__name__}
        except Exception as exc:  # a bug must not hide the other devices' results
            log.exception("campaign on %s failed", name)
            results[name] = {"device": name, "error": f"internal error: {type(exc).__name__}: {exc}",
                             "error_kind": "internal"}
        finally:
            progress.update(task, completed=budget_s)

    threads = [threading.Thread(target=work, args=(d,), name=f"campaign-{d}", daemon=True) for d in devices]
    interrupted = False
    with progress:
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                for t in threads:
                    t.join(timeout=0.2)
        except KeyboardInterrupt:
            interrupted = True
            stop.set()
            progress.console.print("[yellow]stopping after the current models… (Ctrl-C again to force)[/yellow]")
            for t in threads:
                t.join()
    out = [results.get(d, {"device": d, "error": "did not finish"}) for d in devices]
    if not as_json:
        for r in out:
            if "error" in r:
                console.print(f"[red]{r['device']}: {r['error']}[/red]")
            else:
                console.print(
                    f"{r['device']}: campaign {r['campaign_id']}: {r['measured']} measured,"
                    + (f" {r['revisited']} timed again," if r.get("revisited") else "")
                    + f" {r['failed']} failed in {r['elapsed_s'] / 60:.1f} min"
                    f" ({r.get('campaign_total_ok', r['measured'])} measurements in the campaign;"
                    f" {r['stopped_because'] or 'done'})")
                gate = r.get("gate") or {}
                if gate.get("waits"):
                    console.print(
                        f"{r['device']}: quiet gate: {gate['waits']} models waited for a quiet device"
                        f" ({gate['waited_s'] / 60:.1f} min in all); {gate['contended_items']} measured while"
                        " still contended")
                warning = (r.get("measurement_consistency") or {}).get("warning")
                if warning:
                    console.print(f"[yellow]{r['device']}: warning: {warning}[/yellow]")
    if interrupted:
        raise KeyboardInterrupt
    return out


def _consistency_of_saved_profile(device: str, target_kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The measurement consistency on the card of the profile the campaign just trained."""
    from . import api
    from .predictor.profile import Profile
    from .predictor.registry import user_profile_path

    _, target = api.resolve_target(device, **target_kwargs)
    path = user_profile_path(target)
    try:
        return Profile.load(path).card.get("measurement_consistency") if path.is_file() else None
    except EdgecostError:
        return None

