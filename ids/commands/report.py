"""`otids report PCAP... -o report.html [detector options]` and `otids report --from ALERTS --events EVENTS`:
one self-contained HTML report. Both feed ECS documents to the same model (ids.report.model): the PCAP path
the documents its run renders (the same detectors and options as `otids analyze`), the --from path the lines
of an earlier run's NDJSON files.
"""
from __future__ import annotations

import importlib
import os
import sys
import time

from ..errors import UserError


def register(sub) -> None:
    p = sub.add_parser("report", help="one self-contained HTML report (overview, timeline, map, findings, assets)",
                       description="Analyse captures (with the same detector options as `otids analyze`) or read an "
                                   "earlier run's NDJSON outputs, and write one HTML file that opens offline: "
                                   "overview, alert timeline, communication map, protocol mix, findings with "
                                   "evidence, assets, Modbus/OPC UA/MQTT activity per device, baseline deviations.")
    p.add_argument("pcaps", nargs="*", metavar="PCAP", help="capture files (pcap, pcapng, .gz)")
    p.add_argument("-o", "--output", metavar="FILE", default="otids-report.html",
                   help="the HTML file to write (default: otids-report.html)")
    p.add_argument("--from", dest="from_alerts", metavar="ALERTS",
                   help="build from this alerts NDJSON of an earlier run instead of captures")
    p.add_argument("--events", metavar="FILE", action="append", default=[],
                   help="with --from: that run's events NDJSON (repeatable: e.g. events and connection records)")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration (see otids.example.yaml)")
    from ..cli import ANALYZE_PLUGINS
    for mod in ANALYZE_PLUGINS:
        importlib.import_module(mod).add_arguments(p)
    p.set_defaults(func=cmd_report)


def read_ndjson(path: str, numbered: bool = False):
    """Documents of an NDJSON file, one per line (with `numbered`, (line, document) pairs); a bad line is an
    error naming the file and line."""
    import orjson
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                line.decode("utf-8")  # orjson says "str is not valid UTF-8: surrogates not allowed" of a capture
                doc = orjson.loads(line)
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{n}: not a JSON document (not UTF-8 text, byte {e.start} of the line)") from None
            except orjson.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not a JSON document ({e})") from None
            if not isinstance(doc, dict):
                raise UserError(f"{path}:{n}: not a JSON object")
            yield (n, doc) if numbered else doc


#: what reading a document of the wrong shape raises in the report model (a string where an object
#: belongs, a list as an address, text as a count): found by mutating each field of otids output
SHAPE_ERRORS = (TypeError, AttributeError, ValueError, KeyError, IndexError, OverflowError, RecursionError)


def wrong_document(sources: list[str], e: Exception) -> str:
    """One line for documents the report model could not take, naming the first one that breaks it: the
    smallest prefix of the documents that fails, found by bisection (log n rebuilds, only once something
    failed, so that reading files that fit costs nothing), and what of it does not fit its field definition
    (ids/data/fields), else the error itself."""
    from ..report.model import ReportModel

    docs = [(path, n, doc) for path in sources for n, doc in read_ndjson(path, numbered=True)]

    def fails(k: int):
        model = ReportModel()
        try:
            for _, _, doc in docs[:k]:
                if (doc.get("event") or {}).get("kind") == "alert":
                    model.add_alert(doc)
                else:
                    model.add_event(doc)
            model.build()
        except SHAPE_ERRORS as err:
            return err
        return None

    lo, hi = 0, len(docs)  # the first lo documents build; all of them do not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(mid):
            hi = mid
        else:
            lo = mid
    if not docs or not fails(hi):  # pragma: no cover - not reproducible from the files: say it as it came
        return f"{', '.join(sources)}: a document the report cannot read ({type(e).__name__}: {str(e)[:200]})"
    path, n, doc = docs[hi - 1]

    def retry(changed: dict):
        docs[hi - 1] = (path, n, changed)
        try:
            return fails(hi)
        finally:
            docs[hi - 1] = (path, n, doc)

    return f"{path}:{n}: not an otids document ({shape_problem(doc, fails(hi), retry)})"


def shape_problem(doc, e: Exception, retry=None) -> str:
    """What of `doc` does not fit its field definition (ids/data/fields), else the error `e` raised.

    The definitions do not say which fields may hold a list (ECS lets any field be one), so a list where the
    reader needs one value passes them and fails as "unhashable type". With `retry` (a document -> the error
    reading it raises, or None), each list-valued field of `doc` is tried as one value: the first whose
    change makes that error go is named."""
    from ..output.fields import load_fields

    fs = load_fields()
    issues = [i for i in fs.validate(doc) if i.problem != "unknown field"]
    if issues:
        return f"{issues[0].path}: {issues[0].detail}"
    if retry is not None and isinstance(doc, dict):
        for path, value in _list_leaves(doc, "", fs):
            if retry(_one_value(doc, path.split("."), value)) is None:
                from ..output.fields import _preview
                return f"{path}: expected one value, got a list {_preview(value)}"
    return f"{type(e).__name__}: {str(e)[:200]}"


_NOT_ONE_VALUE = ("object", "nested", "flattened")  # field types whose value is an object, not one value


def _list_leaves(obj: dict, prefix: str, fs):
    """(path, list) of each field of `obj` declared as a value (not an object) that holds a list."""
    for key, value in obj.items():
        name = prefix + str(key)
        if isinstance(value, dict):
            yield from _list_leaves(value, name + ".", fs)
        elif isinstance(value, list) and name in fs.fields and fs.fields[name].type not in _NOT_ONE_VALUE:
            yield name, value


def _one_value(doc: dict, keys: list[str], value: list) -> dict:
    """A copy of `doc` (copied along `keys` only) with the list at `keys` as its first element, or without
    the field when the list is empty."""
    out = dict(doc)
    node = out
    for k in keys[:-1]:
        node[k] = dict(node[k])
        node = node[k]
    if value:
        node[keys[-1]] = value[0]
    else:
        del node[keys[-1]]
    return out




class ReportSink:
    """An alert and event sink that hands each document, as the NDJSON sinks render it, to the model.
    Alerts get their deterministic event.id (ids.output.ndjson.stamp) as in the alerts file."""

    path = "<report>"

    def __init__(self, model):
        self.model = model
        self.count = 0
        self.alert_seq = 0

    def write_event(self, ev) -> None:
        self.count += 1
        self.model.add_event(ev.to_doc())

    def write_alert(self, alert) -> None:
        from ..output.ndjson import stamp
        self.alert_seq += 1
        doc = alert.to_doc()
        stamp(doc, self.alert_seq)
        self.model.add_alert(doc)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def build_from_captures(args, model) -> tuple[list[str], int]:
    """Run the pipeline over args.pcaps with analyze's detectors; documents go to `model`. Returns errors."""
    from ..cli import ANALYZE_PLUGINS
    from ..config import load_config
    from ..detect.anomaly import AnomalyDetector
    from ..pipeline import Run

    config = load_config(args.config)
    from ..errors import missing_captures
    err = missing_captures(args.pcaps)  # a directory is not "no such capture file"
    if err is not None:
        raise err
    sink = ReportSink(model)
    detectors = [AnomalyDetector(config.anomaly)] if config.anomaly.enabled else []
    alert_sinks, event_sinks = [sink], [sink]
    for mod in ANALYZE_PLUGINS:
        d, sa, se = importlib.import_module(mod).build(args, config)
        detectors += d
        alert_sinks += sa
        event_sinks += se
    run = Run(config, detectors, alert_sinks, event_sinks)
    for p in args.pcaps:
        run.analyze_file(p)
    run.finish()
    for s in {id(s): s for s in alert_sinks + event_sinks}.values():
        s.close()
    return run.errors, run.decoder.stats.packets


def write_report(model_doc: dict, output: str, sources: list[str], elapsed: float | None = None) -> int:
    from .. import __version__
    from ..report.render import render

    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = f"Generated {stamp} by otids {__version__} from " + ", ".join(os.path.basename(s) for s in sources)
    html = render(model_doc, line)
    from ..output.safefile import OutputFile
    try:  # a device or pipe (-o /dev/full, /dev/stdout) is written directly, never renamed over
        out = OutputFile(output)
        try:
            out.write(html)
            out.commit()
        except BaseException:
            out.discard()
            raise
    except OSError as e:
        raise UserError(f"{output}: cannot write: {e.strerror}") from None
    return len(html.encode())


def check_output(output: str, inputs: list[str]) -> None:
    """The report never replaces one of its own inputs (a slip of -o)."""
    if os.path.exists(output):
        for p in inputs:
            if os.path.exists(p) and os.path.samefile(p, output):
                raise UserError(f"{output}: is an input of this report; choose another -o")


def cmd_report(args) -> int:
    from ..report.model import ReportModel

    t0 = time.perf_counter()
    model = ReportModel()
    errors: list[str] = []
    if args.from_alerts:
        if args.pcaps:
            raise UserError("give capture files or --from, not both")
        sources = [args.from_alerts, *args.events]
        check_output(args.output, sources)
        try:
            for path in sources:  # each document by its kind, whichever file it is in
                for doc in read_ndjson(path):
                    if (doc.get("event") or {}).get("kind") == "alert":
                        model.add_alert(doc)
                    else:
                        model.add_event(doc)
            built = model.build()
        except SHAPE_ERRORS as e:  # a field of the wrong type (a string as `event`, text as a count)
            raise UserError(wrong_document(sources, e)) from None
    else:
        if not args.pcaps:
            raise UserError("give capture files, or --from ALERTS --events EVENTS")
        if args.events:
            raise UserError("--events is for --from (a capture run keeps its events in the report)")
        check_output(args.output, args.pcaps)
        errors, packets = build_from_captures(args, model)
        sources = list(args.pcaps)
        if errors and not packets:  # nothing analysed: exit 2, as analyze and assets, and no empty report
            for err in errors:
                print(f"otids: error: {err}", file=sys.stderr)
            left = "left as it was" if os.path.exists(args.output) else "not written"
            print(f"otids: error: nothing analysed (no packet read); {args.output} {left}", file=sys.stderr)
            return 2
    t1 = time.perf_counter()
    doc = built if args.from_alerts else model.build()
    size = write_report(doc, args.output, sources)
    t2 = time.perf_counter()
    o = doc["overview"]
    print(f"otids: report {args.output}: {size:,} bytes, {o['hosts']:,} hosts, {o['alerts']:,} alerts; "
          f"{'analysis' if not args.from_alerts else 'reading'} {t1 - t0:.2f} s, report {t2 - t1:.2f} s",
          file=sys.stderr)
    for err in errors:
        print(f"otids: error: {err}", file=sys.stderr)
    return 1 if errors else 0
