"""Where a training step's time goes: a few whole steps under torch.profiler, summarised.

The phases run in training's order, each inside a named range and followed by a
synchronisation (in a range of its own, so it is not counted as the phase's), so every kernel
a phase launches runs inside its range. For each phase, per step:

- `wall_seconds`: the range's length on the host clock, the synchronisation at its end
  included (the profiler's own per-operator cost too: compare with the unprofiled timings);
- `host_op_seconds`, `operator_calls`: host time inside operators (their self time summed) and
  the operators called from Python or from the autograd engine (not those inside another);
- on a device with a timeline (CUDA): `device_busy_seconds` (the union of its kernels, copies
  and fills), `device_busy_fraction` of the wall time, `device_idle_seconds`, `kernels`,
  `kernel_launches` and `graph_launches` (the runtime calls that start them),
  `synchronizations` (runtime calls that make the host wait for the device), copies by
  direction, the idle gaps (how many of at least `GAP_MICROSECONDS`, the largest with the
  kernels around them) and `top_kernels` by device time. Elsewhere these are None: the CPU
  runs the operators itself, and `top_operators` (by self time) says where its time goes.

The summary is a few kilobytes whatever the trace's size; `format_profile` renders it as text.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from storm_wm.measure import synchronize

PHASE_PREFIX = "storm-wm phase: "
PHASE_END = "storm-wm phase end (synchronisation)"
GAP_MICROSECONDS = 10.0
"""Device idle stretches shorter than this are launch jitter; longer ones are counted."""
TOP = 8
LARGEST_GAPS = 3
NAME_LENGTH = 140
"""Kernel names (templated library kernels especially) are cut to this many characters."""

_DEVICE_KINDS = ("kernel", "memcpy", "memset")
_SYNC = re.compile(r"Synchronize|^cudaMemcpy$|^cuMemcpy(DtoH|HtoD)?(_v2)?$")
_LAUNCH = re.compile(r"LaunchKernel|LaunchCooperativeKernel")
_GRAPH_LAUNCH = re.compile(r"GraphLaunch")
_RUNTIME = re.compile(r"^(cuda|cu)[A-Z]")


@dataclass
class TraceEvent:
    """One profiler event, reduced to what the summary needs; times in microseconds."""

    name: str
    kind: str
    """annotation (a named range), op (an operator on the host), runtime (a CUDA runtime or
    driver call), kernel, memcpy or memset (on the device)."""
    start: float
    end: float
    thread: int = 0
    self_time: float = 0.0
    """Host events: time not spent in a nested event (set by `nest`)."""
    top_level: bool = False
    """Ops: not inside another op (set by `nest`)."""


_ACTIVITY_KINDS = {
    "user_annotation": "annotation",
    "cpu_op": "op",
    "cuda_runtime": "runtime",
    "cuda_driver": "runtime",
    "kernel": "kernel",
    "gpu_memcpy": "memcpy",
    "gpu_memset": "memset",
    "concurrent_kernel": "kernel",
}
"""The profiler's activity types that the summary keeps, by kind; it drops the others
(device-side copies of annotations, overhead markers, python frames)."""


def _kind(name: str, on_device: bool, activity: str | None, annotation: bool) -> str | None:
    """The event's kind from the profiler's activity type where it gives one, else its name."""
    if activity:
        return _ACTIVITY_KINDS.get(activity)
    if annotation:
        return None if on_device else "annotation"
    if on_device:
        return name[:6].lower() if name.startswith(("Memcpy", "Memset")) else "kernel"
    return "runtime" if _RUNTIME.match(name) else "op"


def trace_events(profiler: profile) -> list[TraceEvent]:
    """The profiler's events as TraceEvents, read from its raw (kineto) results: building
    PyTorch's event tree for a large trace takes far longer than this summary needs."""
    raw = profiler.profiler.kineto_results.events()
    events = []
    device_annotations = set()
    for event in raw:
        on_device = event.device_type() != torch.autograd.DeviceType.CPU
        activity = event.activity_type() if hasattr(event, "activity_type") else None
        annotation = bool(event.is_user_annotation())
        if annotation and not on_device:
            device_annotations.add(event.name())
        kind = _kind(event.name(), on_device, activity, annotation)
        if kind is None:
            continue
        start = event.start_ns() / 1e3
        events.append(
            TraceEvent(
                name=event.name(),
                kind=kind,
                start=start,
                end=start + event.duration_ns() / 1e3,
                thread=event.start_thread_id(),
            )
        )
    # Without activity types, a device-side copy of a named range looks like a kernel.
    events = [e for e in events if not (e.kind == "kernel" and e.name in device_annotations)]
    nest(events)
    return events


def nest(events: list[TraceEvent]) -> None:
    """Sets the host events' self time and which ops are top level, from how their intervals
    nest on each thread."""
    by_thread: dict[int, list[TraceEvent]] = defaultdict(list)
    for event in events:
        if event.kind in ("annotation", "op", "runtime"):
            by_thread[event.thread].append(event)
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e.start, -e.end))
        stack: list[tuple[TraceEvent, bool]] = []  # (event, inside an op)
        for event in thread_events:
            while stack and stack[-1][0].end <= event.start:
                stack.pop()
            event.self_time = event.end - event.start
            inside_op = False
            if stack:
                parent, parent_inside = stack[-1]
                parent.self_time -= event.end - event.start
                inside_op = parent_inside or parent.kind == "op"
            event.top_level = event.kind == "op" and not inside_op
            stack.append((event, inside_op))


def _union(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _within(event: TraceEvent, windows: list[tuple[float, float]]) -> bool:
    return any(start <= event.start < end for start, end in windows)


def _top(
    events: list[TraceEvent], seconds_of: Callable[[TraceEvent], float], steps: int, whole: float
) -> list[dict[str, Any]]:
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for event in events:
        totals[event.name][0] += seconds_of(event)
        totals[event.name][1] += 1
    ranked = sorted(totals.items(), key=lambda item: item[1][0], reverse=True)[:TOP]
    return [
        {
            "name": name[:NAME_LENGTH],
            "seconds": seconds / steps,
            "share": seconds / whole if whole > 0 else None,
            "calls": calls / steps,
        }
        for name, (seconds, calls) in ranked
    ]


def _gaps(
    busy: list[tuple[float, float]], windows: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The device's idle stretches of at least GAP_MICROSECONDS within `windows`."""
    gaps = []
    for start, end in windows:
        clipped = [(max(a, start), min(b, end)) for a, b in busy if b > start and a < end]
        edges = [start, *[point for interval in clipped for point in interval], end]
        gaps += [
            (edges[index], edges[index + 1])
            for index in range(0, len(edges), 2)
            if edges[index + 1] - edges[index] >= GAP_MICROSECONDS
        ]
    return gaps


def _described(gap: tuple[float, float], device: list[TraceEvent]) -> dict[str, Any]:
    """A gap with the device work that ended just before it and started just after it
    (`device` sorted by start)."""
    start, end = gap
    before = [e for e in device if e.end <= start + 1e-3]
    after_index = bisect.bisect_left([e.start for e in device], end - 1e-3)
    return {
        "seconds": (end - start) / 1e6,
        "after": max(before, key=lambda e: e.end).name[:NAME_LENGTH]
        if before
        else "the phase's start",
        "before": device[after_index].name[:NAME_LENGTH]
        if after_index < len(device)
        else "the phase's end",
    }


def _phase_summary(
    events: list[TraceEvent],
    windows: list[tuple[float, float]],
    ends: list[tuple[float, float]],
    steps: int,
    timeline: bool,
) -> dict[str, Any]:
    wall = sum(end - start for start, end in windows)
    host = [e for e in events if e.kind in ("op", "runtime") and _within(e, windows)]
    host = [e for e in host if not _within(e, ends)]  # the profile's own synchronisation
    ops = [e for e in host if e.kind == "op"]
    summary: dict[str, Any] = {
        "wall_seconds": wall / 1e6 / steps,
        "host_op_seconds": sum(e.self_time for e in ops) / 1e6 / steps,
        "operator_calls": sum(e.top_level for e in ops) / steps,
        "top_operators": _top(
            ops, lambda e: e.self_time / 1e6, steps, sum(e.self_time for e in ops) / 1e6
        ),
    }
    device = _device_summary(events, host, windows, wall, steps)
    if not timeline:  # the CPU runs the operators itself: no device figures
        device = dict.fromkeys(device)
    return {**summary, **device}


def _device_summary(
    events: list[TraceEvent],
    host: list[TraceEvent],
    windows: list[tuple[float, float]],
    wall: float,
    steps: int,
) -> dict[str, Any]:
    device = [e for e in events if e.kind in _DEVICE_KINDS and _within(e, windows)]
    busy_intervals = _union((e.start, e.end) for e in device)
    busy = sum(
        max(0.0, min(b, end) - max(a, start)) for a, b in busy_intervals for start, end in windows
    )
    runtime = [e for e in host if e.kind == "runtime"]
    gaps = _gaps(busy_intervals, windows)
    device.sort(key=lambda e: e.start)
    largest = sorted(gaps, key=lambda gap: gap[1] - gap[0], reverse=True)[:LARGEST_GAPS]
    copies: dict[str, float] = defaultdict(float)
    for event in device:
        if event.kind == "memcpy":
            direction = re.search(r"[HDP]to[HDP]", event.name)
            copies[direction.group(0) if direction else "other"] += 1 / steps
    kernels = [e for e in device if e.kind == "kernel"]
    return {
        "device_busy_seconds": busy / 1e6 / steps,
        "device_busy_fraction": busy / wall if wall > 0 else None,
        "device_idle_seconds": (wall - busy) / 1e6 / steps,
        "kernels": len(kernels) / steps,
        "kernel_launches": sum(bool(_LAUNCH.search(e.name)) for e in runtime) / steps,
        "graph_launches": sum(bool(_GRAPH_LAUNCH.search(e.name)) for e in runtime) / steps,
        "synchronizations": sum(bool(_SYNC.search(e.name)) for e in runtime) / steps,
        "memcpy": dict(copies),
        "idle_gaps": {
            "threshold_seconds": GAP_MICROSECONDS / 1e6,
            "count": len(gaps) / steps,
            "seconds": sum(end - start for start, end in gaps) / 1e6 / steps,
            "largest": [_described(gap, device) for gap in largest],
        },
        "top_kernels": _top(kernels, lambda e: (e.end - e.start) / 1e6, steps, busy / 1e6),
    }


STEP_TOTALS = (
    "wall_seconds",
    "host_op_seconds",
    "operator_calls",
    "device_busy_seconds",
    "device_idle_seconds",
    "kernels",
    "kernel_launches",
    "graph_launches",
    "synchronizations",
)


def summarize(
    events: list[TraceEvent], phases: list[str], steps: int, timeline: bool
) -> dict[str, Any]:
    """The per-phase summary (module docstring) of `steps` profiled steps, and the step's
    totals over the phases."""
    annotations = [e for e in events if e.kind == "annotation"]
    ends = [(e.start, e.end) for e in annotations if e.name == PHASE_END]
    result: dict[str, Any] = {}
    for name in phases:
        windows = [(e.start, e.end) for e in annotations if e.name == PHASE_PREFIX + name]
        result[name] = _phase_summary(events, windows, ends, steps, timeline)
    step: dict[str, Any] = {}
    for field in STEP_TOTALS:
        values = [phase[field] for phase in result.values()]
        step[field] = None if any(value is None for value in values) else sum(values)
    busy, wall = step["device_busy_seconds"], step["wall_seconds"]
    step["device_busy_fraction"] = busy / wall if busy is not None and wall else None
    return {
        "steps": steps,
        "device_timeline": timeline,
        "gap_threshold_seconds": GAP_MICROSECONDS / 1e6,
        "phases": result,
        "step": step,
    }


def profile_phases(
    phases: dict[str, Callable[[], object]], device: torch.device, steps: int
) -> dict[str, Any]:
    """Runs `steps` rounds of `phases` (in order) under torch.profiler; their summary."""
    timeline = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if timeline else [])
    synchronize(device)
    with profile(activities=activities) as profiler:
        for _ in range(steps):
            for name, function in phases.items():
                with record_function(PHASE_PREFIX + name):
                    function()
                    with record_function(PHASE_END):
                        synchronize(device)
    return {
        "device": str(device),
        **summarize(trace_events(profiler), list(phases), steps, timeline),
    }


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4g} ms"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def format_profile(summary: dict[str, Any]) -> list[str]:
    """The summary as text: one block per phase, per step."""
    if "error" in summary:
        return [f"profile: failed ({summary['error']})"]
    lines = [
        f"profile: {summary['steps']} step(s) under torch.profiler on {summary['device']}, per "
        "step (wall times include the profiler's own cost)"
    ]
    for name, phase in [*summary["phases"].items(), ("training step", summary["step"])]:
        busy = phase["device_busy_fraction"]
        lines.append(
            f"  {name}: wall {_milliseconds(phase['wall_seconds'])}, host in operators "
            f"{_milliseconds(phase['host_op_seconds'])}, {_count(phase['operator_calls'])} "
            "operator calls"
            + (
                ""
                if busy is None
                else f"; device busy {_milliseconds(phase['device_busy_seconds'])} "
                f"({busy:.1%}), idle {_milliseconds(phase['device_idle_seconds'])}, "
                f"{_count(phase['kernels'])} kernels, {_count(phase['kernel_launches'])} "
                f"launches, {_count(phase['graph_launches'])} graph launches, "
                f"{_count(phase['synchronizations'])} synchronisations"
            )
        )
        gaps = phase.get("idle_gaps")
        if gaps:
            lines.append(
                f"    idle gaps of {gaps['threshold_seconds'] * 1e6:g} us or more: "
                f"{_count(gaps['count'])}, {_milliseconds(gaps['seconds'])} in all"
                + "".join(
                    f"; {_milliseconds(gap['seconds'])} after {gap['after'][:60]} before "
                    f"{gap['before'][:60]}"
                    for gap in gaps["largest"]
                )
            )
        if phase.get("memcpy"):
            copies = ", ".join(f"{count:.3g} {way}" for way, count in phase["memcpy"].items())
            lines.append(f"    copies: {copies}")
        for title, key in (("kernel", "top_kernels"), ("operator", "top_operators")):
            for entry in phase.get(key) or []:
                share = "" if entry["share"] is None else f"{entry['share']:>6.1%} "
                lines.append(
                    f"    {title:<8} {share}{_milliseconds(entry['seconds']):>11} "
                    f"{entry['calls']:>7.4g} calls  {entry['name']}"
                )
    return lines
