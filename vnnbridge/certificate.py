"""Certificate folders anyone can re-check: ``certificate.json``, ``box.vnnlib``, ``witnesses.npz``.

``certificate.json`` holds the network (path, sha256), the input, label, domain, delta, the
method, the box as exact floats (``repr`` decimals that read back to the same doubles, plus
``float.hex``), its metrics, the oracle, every call (query sha256, verdict, seconds), the
witnesses (maximality witnesses of blocked faces, the cube bound, dual tightness) and the dual.
``box.vnnlib`` is the exact final ``unsat`` query. ``witnesses.npz`` stores the witness points
as float64 (``points[k]`` is witness k of the JSON list). Every file is written atomically.

`check_certificate` re-derives all of this: the box file parses back to exactly the certified
box and query, every witness is re-run with onnxruntime, and (given an oracle) the box query
is asked again and must be ``unsat``.
"""

from __future__ import annotations

import io
import json
import logging
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vnnbridge import __version__
from vnnbridge.box import Box
from vnnbridge.cache import atomic_write, sha256_bytes, sha256_file
from vnnbridge.errors import CertificateError, InputError
from vnnbridge.network import load_network
from vnnbridge.oracles.base import Oracle, Query, Verdict
from vnnbridge.search.base import (Grid, Instance, Prober, Purpose, SearchResult, Status, Witness, classified_as,
                                   misclassified)
from vnnbridge.search.metrics import box_metrics
from vnnbridge.vnnlib.model import Spec, robustness_spec

__all__ = ["CERTIFICATE", "Check", "CheckReport", "check_certificate", "read_certificate", "trust_json",
           "write_certificate"]

log = logging.getLogger(__name__)

CERTIFICATE = "certificate.json"
BOX_FILE = "box.vnnlib"
WITNESS_FILE = "witnesses.npz"
FORMAT = "vnnbridge-certificate/1"


def _floats(values: np.ndarray | tuple[float, ...]) -> dict[str, list[Any]]:
    flat = [float(v) for v in np.ravel(values)]
    return {"values": flat, "hex": [v.hex() for v in flat]}


def _box_json(box: Box, steps: np.ndarray | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "lower": list(box.lower), "upper": list(box.upper),
        "lower_hex": [v.hex() for v in box.lower], "upper_hex": [v.hex() for v in box.upper],
    }
    if steps is not None:
        out["steps"] = [int(s) for s in steps]
    return out


def _from_hex(values: list[str], what: str) -> np.ndarray:
    try:
        return np.array([float.fromhex(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CertificateError(f"{what}: bad hex float ({exc})") from None


def _box_from(data: dict[str, Any], what: str) -> Box:
    try:
        return Box.from_arrays(_from_hex(data["lower_hex"], what), _from_hex(data["upper_hex"], what))
    except (KeyError, ValueError) as exc:
        raise CertificateError(f"{what}: {exc}") from None


def _witness_json(w: Witness, index: int) -> dict[str, Any]:
    return {"index": index, "kind": w.kind, "face": w.face, "call": w.call}


def _search_json(res: SearchResult, inst: Instance) -> dict[str, Any]:
    return {
        "method": res.method,
        "status": "certified" if res.certified else "not certified",  # a dual: its own claim
        "box": _box_json(res.box, res.steps),
        "metrics": box_metrics(res.box, inst.x, inst.domain),
        "cube_steps": res.cube_steps,
        "exact": res.exact,
        "stuck_faces": res.stuck_faces,
    }


def trust_json(prober: Prober, result: SearchResult, confirm: str | None) -> dict[str, Any]:
    """The certificate's record of how far the oracle was trusted: cross-examination, refutations, confirmation."""
    falsifier = prober.falsifier
    examined = [c for c in prober.calls if c.verdict is Verdict.UNSAT and c.purpose != Purpose.CONFIRM]
    conf = result.confirmation
    confirmation = None
    if confirm is not None:
        confirmation = {"oracle": confirm, "call": None if conf is None else conf.index,
                        "verdict": None if conf is None else conf.verdict.value,
                        "reason": "" if conf is None else conf.reason, "confirmed": result.confirmed is True}
    return {
        "cross_examination": {"falsifier": None if falsifier is None else falsifier.name,
                              "unsat_answers": len(examined) if falsifier is not None else 0,
                              "seconds": sum(c.examine_seconds for c in prober.calls),
                              "unavailable": prober.unexamined},
        "refuted_count": len(prober.refutations),
        "refuted": [r.to_json() for r in prober.refutations],
        "confirmation": confirmation,
        "unconfirmed": bool(confirm is not None and result.certified and result.confirmed is not True),
    }


def write_certificate(folder: str | Path, prober: Prober, result: SearchResult, dual: SearchResult | None = None,
                      *, source: str = "", shape: tuple[int, ...] = (), seconds: float = 0.0,
                      extra: dict[str, Any] | None = None, confirm: str | None = None) -> Path:
    """Write the certificate folder for ``result`` (and ``dual``); returns the JSON path.

    ``confirm`` names the confirming oracle when one was asked (None: no confirmation wanted).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    inst, g = prober.instance, prober.grid
    witnesses = list(result.witnesses) + (list(dual.witnesses) if dual else [])
    points = (np.stack([np.asarray(w.point, dtype=np.float64).ravel() for w in witnesses])
              if witnesses else np.zeros((0, g.n)))
    buf = io.BytesIO()
    np.savez_compressed(buf, points=points)
    atomic_write(out / WITNESS_FILE, buf.getvalue())
    proof = None
    if result.certified and result.proof is not None:
        text = Path(result.proof.vnnlib).read_text()
        if sha256_bytes(text.encode()) != result.proof.sha256:
            raise CertificateError(f"the proof query {result.proof.vnnlib} changed since it was asked")
        atomic_write(out / BOX_FILE, text)
        proof = {"call": result.proof.index, "query_sha256": result.proof.sha256, "file": BOX_FILE}
    net = inst.net
    data: dict[str, Any] = {
        "format": FORMAT,
        "vnnbridge": __version__,
        "status": (result.status if proof is not None else Status.NOT_CERTIFIED).value,
        "method": result.method,
        "label": inst.label,
        "delta": inst.delta,
        "delta_hex": inst.delta.hex(),
        "margin": inst.margin,
        "box": _box_json(result.box, result.steps),
        "metrics": box_metrics(result.box, inst.x, inst.domain),
        "apothem_steps": result.cube_steps,
        "apothem_exact": result.exact,
        "calls": [c.to_json() for c in prober.calls],
        "call_count": len(prober.calls),
        "oracle_seconds": sum(c.seconds for c in prober.calls),
        "seconds": seconds,
        "network": {"path": str(Path(inst.onnx).resolve()), "sha256": net.sha256,
                    "input_shape": list(net.input_shape), "outputs": net.outputs},
        "input": {"source": source, "shape": list(shape), **_floats(inst.x)},
        "domain": _box_json(inst.domain),
        "oracle": {"name": prober.oracle.name, "version": _version(prober)},
        "proof": proof,
        "witnesses": [_witness_json(w, k) for k, w in enumerate(witnesses)],
        "witness_file": WITNESS_FILE,
        "witness_sha256": sha256_file(out / WITNESS_FILE),
        "stuck_faces": result.stuck_faces,
        "open_faces": result.open_faces,
        "interrupted": result.interrupted,
        "notes": result.notes,
        "dual": _search_json(dual, inst) if dual else None,
        **trust_json(prober, result, confirm),
    }
    if extra:
        data.update(extra)
    return atomic_write(out / CERTIFICATE, json.dumps(data, indent=1, allow_nan=False) + "\n")


def _version(prober: Prober) -> str:
    try:
        return str(prober.oracle.version())
    except Exception as exc:  # a version probe must never sink a finished certificate
        log.debug("oracle version unavailable: %s", exc)
        return ""


def read_certificate(folder: str | Path) -> dict[str, Any]:
    """The parsed ``certificate.json`` of ``folder`` (CertificateError when unreadable)."""
    path = Path(folder)
    if path.is_file():
        path = path.parent
    target = path / CERTIFICATE
    if not target.is_file():
        raise CertificateError(f"no {CERTIFICATE} in this folder", path=str(path))
    try:
        data = json.loads(target.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CertificateError(f"unreadable certificate: {exc}", path=str(target)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CertificateError(f"not a {FORMAT} file", path=str(target))
    return data


@dataclass(frozen=True)
class Check:
    """One verified claim of a certificate."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class CheckReport:
    """All checks run on a certificate; ``ok`` only when every one holds."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every check holds."""
        return bool(self.checks) and all(c.ok for c in self.checks)

    def first_failure(self) -> Check | None:
        """The first check that does not hold."""
        return next((c for c in self.checks if not c.ok), None)

    def add(self, name: str, ok: bool, detail: str = "") -> None:
        """Record one check."""
        self.checks.append(Check(name, bool(ok), detail))


def _polys(spec: Spec) -> list[tuple[tuple[tuple[float, ...], ...], tuple[float, ...]]]:
    return sorted((p.a, p.b) for c in spec.cases for p in c.polytopes)


def _coordinate(i: int, shape: tuple[int, ...]) -> str:
    """Coordinate ``i`` of the flat input named in the input's shape: ``input[0, 3, 4]``."""
    if len(shape) > 1 and int(np.prod(shape)) > i:
        return "input[" + ", ".join(str(int(k)) for k in np.unravel_index(i, shape)) + "]"
    return f"input[{i}]"


def _shape(size: int, *shapes: Any) -> tuple[int, ...]:
    """The first recorded shape with more than one axis that fits the input (else flat)."""
    for cand in shapes:
        try:
            dims = tuple(int(v) for v in cand or ())
        except (TypeError, ValueError):
            continue
        if len(dims) > 1 and all(d > 0 for d in dims) and int(np.prod(dims)) == size:
            return dims
    return (size,)


def _decimal_matches_hex(data: dict[str, Any], key: str, what: str, report: CheckReport,
                         shape: tuple[int, ...]) -> None:
    """The readable decimals must be the very doubles of the hex fields (a reader may use either)."""
    part = data.get(key) or {}
    for side in ("lower", "upper"):
        dec, hexes = part.get(side), part.get(f"{side}_hex")
        if not isinstance(dec, list) or not isinstance(hexes, list) or len(dec) != len(hexes):
            report.add(f"{what} decimals", False, f"{what}.{side} is missing or has the wrong length")
            return
        for i, (d, h) in enumerate(zip(dec, hexes)):
            same = isinstance(d, (int, float)) and not isinstance(d, bool) \
                and struct.pack("<d", float(d)) == struct.pack("<d", float.fromhex(h))
            if not same:
                report.add(f"{what} decimals", False, f"{what}.{side} of {_coordinate(i, shape)} is {d!r} in decimal "
                           f"but {float.fromhex(h)!r} in hex")
                return
    report.add(f"{what} decimals", True)


def check_certificate(folder: str | Path, oracle: Oracle | None = None, timeout: float = 300.0,
                      falsify: bool = True) -> CheckReport:
    """Re-check a certificate folder; ask ``oracle`` again about the box when one is given.

    Besides the oracle, the attack (`Falsifier`) tries to break the box: a wrong oracle can
    say ``unsat`` again, but an onnxruntime-confirmed counterexample cannot be argued with.
    """
    root = Path(folder).resolve()  # tools run in other folders: every path they get is absolute
    root = root.parent if root.is_file() else root
    data = read_certificate(root)
    report = CheckReport()
    try:
        net_info, label, margin = data["network"], int(data["label"]), float(data["margin"])
        delta = float.fromhex(data["delta_hex"])
        x = _from_hex(data["input"]["hex"], "input")
        domain = _box_from(data["domain"], "domain")
        box = _box_from(data["box"], "box")
    except (KeyError, TypeError, ValueError) as exc:
        raise CertificateError(f"certificate.json lacks or garbles {exc}", path=str(root / CERTIFICATE)) from None
    net_path = Path(net_info["path"])
    if not net_path.is_file():
        raise CertificateError(f"the certified network {net_path} is missing", path=str(root / CERTIFICATE))
    net = load_network(net_path)
    shape = _shape(x.size, data["input"].get("shape"), net_info.get("input_shape"))
    report.add("network sha256", net.sha256 == net_info["sha256"], f"{net_path} changed since certification")
    report.add("status", data.get("status") == "certified", f"status is {data.get('status')!r}")
    _decimal_matches_hex(data, "box", "box", report, shape)
    report.add("input in box", box.contains(x), "the input lies outside the certified box")
    report.add("box in domain", domain.contains_box(box), "the box leaves the domain")
    steps = _grid_steps(report, x, domain, delta, box, shape)
    report.add("label is the prediction", net.predict(x) == label or margin > 0,
               f"onnxruntime predicts {net.predict(x)} at the input, the certificate says {label}")
    metrics = box_metrics(box, x, domain)
    stored = data.get("metrics", {})
    report.add("metrics", all(stored.get(k) == v for k, v in metrics.items()),
               "the stored metrics do not match the box")

    # The box file: exactly the certified box and the robustness query, hashed as the proof call.
    box_file = root / BOX_FILE
    proof = data.get("proof") or {}
    if not box_file.is_file():
        report.add("box.vnnlib", False, f"{BOX_FILE} is missing")
    else:
        text = box_file.read_text()
        report.add("box.vnnlib sha256", sha256_bytes(text.encode()) == proof.get("query_sha256"),
                   f"{BOX_FILE} is not the query of the proof call")
        from vnnbridge.vnnlib.parser import parse_file

        spec = parse_file(box_file)
        expected = robustness_spec(box, label, net.outputs, margin)
        same_box = len(spec.cases) == 1 and spec.cases[0].box == box
        report.add("box.vnnlib box", same_box, f"{BOX_FILE} does not parse back to exactly the certified box")
        report.add("box.vnnlib property", spec.inputs == expected.inputs and spec.outputs == expected.outputs
                   and _polys(spec) == _polys(expected),
                   f"{BOX_FILE} is not the robustness query for label {label}")
        query = Query(net_path, spec, box_file, sha256_bytes(text.encode()))
        if falsify:
            _falsify(report, query, label, shape, timeout)
        if oracle is not None:
            res = oracle.check(query, timeout)
            detail = f"{oracle.name} answers {res.verdict.value} on {BOX_FILE}"
            if res.reason:
                detail += f" ({res.reason})"
            report.add(f"oracle {oracle.name}", res.verdict is Verdict.UNSAT, detail)

    _check_refutations(data, report, net, domain, label)
    if steps is not None:
        _check_witnesses(root, data, report, net, x, domain, delta, box, label, margin, steps)
    dual = data.get("dual")
    if dual:
        jbox = _box_from(dual["box"], "dual box")
        report.add("box inside dual", jbox.contains_box(box), "the certified box is not inside its dual")
    return report


def _grid_steps(report: CheckReport, x: np.ndarray, domain: Box, delta: float, box: Box,
                shape: tuple[int, ...]) -> np.ndarray | None:
    """The box's grid steps, or a failed check naming the first face off the delta grid."""
    if not math.isfinite(delta) or delta <= 0:
        report.add("delta", False, f"delta {delta!r} is not a positive number")
        return None
    g = Grid(x, domain, delta)
    lo, hi = box.arrays()
    for i in range(g.n):
        for side, v in (("lower", float(lo[i])), ("upper", float(hi[i]))):
            f = 2 * i + (side == "upper")
            if g.position(f, g.include(f, v)) != v:
                report.add("box on the grid", False, f"the {side} bound {v!r} of {_coordinate(i, shape)} is not on "
                           f"the delta grid around the input (input value {float(x[i])!r}, delta {delta!r})")
                return None
    report.add("box on the grid", True)
    return g.steps_of(box)


def _falsify(report: CheckReport, query: Query, label: int, shape: tuple[int, ...], timeout: float) -> None:
    """The attack on the box; a counterexample onnxruntime confirms is a failed claim."""
    from vnnbridge.search.crossexam import Falsifier, counterexample_margin

    falsifier = Falsifier(steps=100)  # more than during a search: one box, checked once
    if not falsifier.supports(str(query.onnx)):
        report.add("attack", True, "skipped: the engine does not compile this network")
        return
    point = falsifier.refute(query, seconds=min(timeout, 60.0))
    if point is None:
        report.add(falsifier.name, True)
        return
    y = load_network(query.onnx).run(point)
    far = int(np.argmax(np.abs(point - np.asarray(query.spec.cases[0].box.lower))))
    report.add(falsifier.name, False,
               f"a counterexample inside the box (onnxruntime: class {int(np.argmax(y))}, margin "
               f"{counterexample_margin(y, label):.4g} over label {label}; e.g. {_coordinate(far, shape)} = "
               f"{float(point[far])!r})")


def _check_refutations(data: dict[str, Any], report: CheckReport, net: Any, domain: Box, label: int) -> None:
    """Every recorded wrong answer's counterexample is re-run: it must really break the property."""
    recorded = data.get("refuted") or []
    if not recorded:
        return
    bad = []
    for k, r in enumerate(recorded):
        try:
            p = _from_hex(r["point_hex"], f"refuted[{k}]")
        except (KeyError, CertificateError):
            bad.append(f"refutation {k} has no point")
            continue
        y = net.run(p)
        wrong = classified_as(y, label) if _member(data, r) else misclassified(y, label, float(data.get("margin", 0.0)))
        if not (domain.contains(p) and wrong):
            bad.append(f"refutation {k} (call {r.get('call')}) is no counterexample")
    report.add(f"refuted answers ({len(recorded)}, onnxruntime)", not bad, "; ".join(bad[:3]))


def _member(data: dict[str, Any], r: dict[str, Any]) -> bool:
    calls = data.get("calls") or []
    i = r.get("call")
    return isinstance(i, int) and 0 <= i < len(calls) and calls[i].get("purpose") == Purpose.MEMBER.value


def _check_witnesses(root: Path, data: dict[str, Any], report: CheckReport, net: Any, x: np.ndarray,
                     domain: Box, delta: float, box: Box, label: int, margin: float, steps: np.ndarray) -> None:
    meta = data.get("witnesses") or []
    if not meta:
        return
    wfile = root / data.get("witness_file", WITNESS_FILE)
    if not wfile.is_file():
        report.add("witnesses", False, f"{wfile.name} is missing")
        return
    report.add("witness file sha256", sha256_file(wfile) == data.get("witness_sha256"),
               f"{wfile.name} changed since certification")
    with np.load(wfile, allow_pickle=False) as npz:
        points = np.asarray(npz["points"], dtype=np.float64)
    if len(points) != len(meta):
        report.add("witnesses", False, f"{len(meta)} witnesses listed, {len(points)} stored")
        return
    g = Grid(x, domain, delta)
    dual = data.get("dual")
    try:
        dual_steps = g.steps_of(_box_from(dual["box"], "dual box")) if dual else None
    except InputError as exc:
        report.add("dual box on the grid", False, exc.message)
        return
    bad: list[str] = []
    for w, p in zip(meta, points):
        kind, face, k = w.get("kind"), w.get("face"), w.get("index")
        if not domain.contains(p):
            bad.append(f"witness {k} lies outside the domain")
            continue
        y = net.run(p)
        if kind == "face":
            i = face // 2
            grown = steps.copy()
            grown[face] += 1
            if not (misclassified(y, label, margin) and g.box(grown).contains(p) and not box.contains(p)):
                bad.append(f"witness {k} does not block face {face} (coordinate {i})")
        elif kind == "cube":
            r = data.get("apothem_steps")
            if not misclassified(y, label, margin):
                bad.append(f"cube witness {k} is classified as {label}")
            elif r is not None and data.get("apothem_exact") and g.cube_include(p) != r + 1:
                bad.append(f"cube witness {k} does not lie one step beyond the apothem cube")
        elif kind == "member":
            if not classified_as(y, label):
                bad.append(f"dual witness {k} is not classified as {label}")
            elif dual_steps is not None and face is not None:
                if g.include(face, float(p[face // 2])) > dual_steps[face]:
                    bad.append(f"dual witness {k} lies outside the dual box")
        else:
            bad.append(f"witness {k} has unknown kind {kind!r}")
    report.add(f"witnesses ({len(meta)}, onnxruntime)", not bad, "; ".join(bad[:3]) + (" ..." if len(bad) > 3 else ""))
