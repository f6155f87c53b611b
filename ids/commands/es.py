"""Command-line wiring of the Elasticsearch output: the `analyze`/`live` options and plug-in build(), and
the `otids es` subcommands (setup, generate, package, validate, load)."""
from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import replace

from ..errors import UserError
from ..output.elasticsearch.settings import auth_header, cloud_urls, config_problem, credentials, display_url, sensor_name, sensor_paths

# The cluster client (urllib, ssl, the sender thread) loads where a cluster is used, not in every run:
# each function below that talks to one imports what it needs.


def add_arguments(parser) -> None:
    g = parser.add_argument_group("Elasticsearch / OpenSearch output (docs/ELASTICSEARCH.md)")
    g.add_argument("--es", metavar="URL", help="also send alerts to this Elasticsearch or OpenSearch cluster "
                                              "(credentials: OTIDS_ES_API_KEY or OTIDS_ES_USERNAME/OTIDS_ES_PASSWORD)")
    g.add_argument("--es-events", action="store_true", help="also send every protocol event to the cluster")
    g.add_argument("--es-flavor", choices=("auto", "elasticsearch", "opensearch"),
                   help="client to use (default: elasticsearch.flavor, auto)")


def effective_config(args, config):
    cfg = config.elasticsearch
    over = {}
    if getattr(args, "es", None):
        over["url"] = args.es
    if getattr(args, "es_events", False):
        over["events"] = True
    if getattr(args, "es_flavor", None):
        over["flavor"] = args.es_flavor
    if getattr(args, "kibana", None):
        over["kibana_url"] = args.kibana
    cfg = replace(cfg, **over) if over else cfg
    if cfg.cloud_id and not cfg.url:
        es, kb = cloud_urls(cfg.cloud_id)
        cfg = replace(cfg, url=es, kibana_url=cfg.kibana_url or kb)
    problem = config_problem(cfg)
    if problem:
        raise UserError(f"elasticsearch.{problem[0]}: {problem[1]}")
    return sensor_paths(cfg)


def build(args, config):
    cfg = effective_config(args, config)
    if not cfg.url:
        return [], [], []
    from ..output.elasticsearch.shipper import Shipper
    from ..output.elasticsearch.sinks import AlertSink, EventSink
    shipper = Shipper(cfg.url, cfg)
    _sigterm_closes_outputs()
    alerts = AlertSink(shipper, cfg.namespace, sensor_name(cfg))
    events = [EventSink(shipper, cfg.namespace, sensor_name(cfg))] if cfg.events else []
    return [], [alerts], events


def _sigterm_closes_outputs() -> None:
    """docker stop / systemctl stop send SIGTERM: turn it into the same clean stop as Ctrl-C, so the
    CLI's finally-block closes the outputs and the queue is delivered or spooled, not lost."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        def _term(signum, frame):
            raise KeyboardInterrupt
        signal.signal(signal.SIGTERM, _term)


# ---------------------------------------------------------------------------------------------- otids es

def register(sub) -> None:
    p = sub.add_parser("es", help="Elasticsearch / OpenSearch: set up a cluster, generate mappings, validate, load",
                       description="Elasticsearch and OpenSearch support (docs/ELASTICSEARCH.md).")
    es = p.add_subparsers(dest="es_command", metavar="ACTION")

    s = es.add_parser("setup", help="install lifecycle policies, templates and the Kibana saved objects",
                      description="Install the ILM (Elasticsearch) or ISM (OpenSearch) policies, component and "
                                  "index templates, and import the dashboards through Kibana's (or OpenSearch "
                                  "Dashboards') saved-objects API.")
    _cluster_args(s)
    s.add_argument("--kibana", metavar="URL", help="Kibana / OpenSearch Dashboards URL (default: elasticsearch.kibana_url)")
    s.add_argument("--no-kibana", action="store_true", help="skip the saved objects and detection rules")
    s.add_argument("--no-rules", action="store_true", help="skip the Elastic Security detection rules")
    s.add_argument("--force", action="store_true",
                   help="overwrite policies, pipeline and templates even when the cluster holds the same or a "
                        "newer version (an administrator's edit); default: install only when absent or older")
    s.add_argument("--wait", type=int, default=0, metavar="SECONDS",
                   help="wait up to this long for the cluster and Kibana to answer (containers starting)")
    s.set_defaults(func=cmd_setup)

    g = es.add_parser("generate", help="regenerate deploy/ templates, Kibana objects and docs/FIELDS.md",
                      description="Write every file generated from ids/data/fields/*.yml.")
    g.add_argument("--out", default=".", metavar="DIR", help="repository root to write into (default: .)")
    g.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    g.set_defaults(func=cmd_generate)

    pk = es.add_parser("package", help="generate the Elastic integration package (Fleet)",
                       description="Write the otids integration package (package-spec format: manifest, data "
                                   "streams alert/events/conn, fields, ingest pipelines, Elastic Agent filestream "
                                   "input, dashboards), as a directory or as the zip Kibana's integration upload "
                                   "takes (docs/ELASTICSEARCH.md).")
    pk.add_argument("-o", "--output", required=True, metavar="DIR|FILE.zip",
                    help="package directory, or FILE.zip holding otids-<version>/")
    pk.add_argument("--force", action="store_true", help="replace an existing package directory or zip")
    pk.set_defaults(func=cmd_package)

    v = es.add_parser("validate", help="check NDJSON documents against the field definitions",
                      description="Report every field that is undeclared, of the wrong type or out of range.")
    v.add_argument("files", nargs="+", metavar="NDJSON")
    v.set_defaults(func=cmd_validate)

    ld = es.add_parser("load", help="ship NDJSON alert/event files (and the spool) to the cluster",
                       description="Send documents written by `otids analyze -o/--events` to the cluster with "
                                   "their event.id as _id (so nothing is stored twice), after replaying the spool.")
    _cluster_args(ld)
    ld.add_argument("files", nargs="*", metavar="NDJSON")
    ld.set_defaults(func=cmd_load)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def _cluster_args(p) -> None:
    p.add_argument("--es", metavar="URL", help="cluster URL (default: elasticsearch.url from the config)")
    p.add_argument("-c", "--config", metavar="FILE", help="YAML configuration")
    p.add_argument("--es-flavor", choices=("auto", "elasticsearch", "opensearch"))


def _load_cfg(args):
    from ..config import load_config

    cfg = effective_config(args, load_config(args.config))
    if not cfg.url:
        raise UserError("no cluster: give --es URL or set elasticsearch.url in the config")
    return cfg


def cmd_setup(args) -> int:
    from ..output.elasticsearch.backend import ClusterError, Unreachable, connect, install, layout_for

    cfg = _load_cfg(args)
    creds = credentials(cfg)
    deadline = time.monotonic() + args.wait
    while True:
        try:
            backend, info = connect(cfg.url, cfg, creds)
            break
        except (Unreachable, ClusterError) as e:
            if time.monotonic() >= deadline:
                raise UserError(f"{display_url(cfg.url)}: {e}") from None
            time.sleep(2)
    layout = layout_for(cfg, backend.flavor)
    print(f"otids: {backend.flavor} {backend.version} at {display_url(cfg.url)} ({layout.mode} mode)")
    try:
        for line in install(backend, layout, force=args.force):
            print(f"  {line}")
    except (Unreachable, ClusterError) as e:
        raise UserError(f"{display_url(cfg.url)}: setup failed: {e}") from None
    if args.no_kibana:
        return 0
    if not cfg.kibana_url:
        print("  Kibana: no URL (--kibana or elasticsearch.kibana_url); saved objects not imported")
        return 0
    n = import_saved_objects(cfg, creds, backend.flavor, deadline)
    print(f"  imported {n} saved objects into {display_url(cfg.kibana_url)}")
    if backend.flavor == "elasticsearch" and not args.no_rules:
        n = import_detection_rules(cfg, creds, deadline)
        print(f"  imported {n} Elastic Security detection rules (disabled: enable them in Security -> Rules)")
    return 0


def import_saved_objects(cfg, creds: dict, flavor: str, deadline: float = 0.0) -> int:
    """POST the saved objects to Kibana's (or OpenSearch Dashboards') _import API, overwriting ours."""
    from ..output import kibana
    from ..output.fields import load_fields

    objs = kibana.saved_objects(load_fields(), "kibana" if flavor == "elasticsearch" else "opensearch")
    api = "/api/saved_objects/_import"
    answer = kibana_import(cfg, creds, flavor, api + "?overwrite=true", "otids.ndjson",
                           kibana.ndjson(objs).encode(), deadline)
    if answer.get("success", False) is not True:
        errs, first = _import_errors(answer, ("type", "id"), "type")
        raise UserError(f"{display_url(cfg.kibana_url)}: saved objects import reported {len(errs)} error(s): {first}"
                        if errs else f"{display_url(cfg.kibana_url)}: {api} did not report success: "
                                     f"{_describe(answer)}")
    return _import_count(cfg, api, answer, "successCount", len(objs))


def import_detection_rules(cfg, creds: dict, deadline: float = 0.0) -> int:
    """POST the Elastic Security rules (secrules.py) to the detection engine's _import API."""
    from ..output import secrules

    rules = secrules.detection_rules()
    api = "/api/detection_engine/rules/_import"
    answer = kibana_import(cfg, creds, "elasticsearch", api + "?overwrite=true",
                           "otids-rules.ndjson", secrules.ndjson(rules).encode(), deadline)
    errs, first = _import_errors(answer, ("rule_id",), "message")
    if errs or answer.get("success", False) is not True:
        raise UserError(f"{display_url(cfg.kibana_url)}: detection rules import reported {len(errs)} error(s): {first}"
                        if errs else f"{display_url(cfg.kibana_url)}: {api} did not report success: "
                                     f"{_describe(answer)}")
    return _import_count(cfg, api, answer, "success_count", len(rules))


def _describe(v) -> str:
    from ..output.elasticsearch.answers import describe
    return describe(v)


def _import_errors(answer: dict, names: tuple, detail: str) -> tuple[list, str]:
    """The `errors` of an import API's answer and the first three in one line, whatever their shape (a list
    of objects is documented; anything else is said as it came, cut)."""
    from ..output.elasticsearch.answers import cut

    errs = answer.get("errors") or []
    if not isinstance(errs, list):
        errs = [errs]

    def one(x) -> str:
        if not isinstance(x, dict):
            return cut(x, 200)
        err = x.get("error")
        why = err.get(detail) if isinstance(err, dict) else err
        return cut(" ".join(str(x.get(k)) for k in names) + f": {cut(why, 200)}", 300)
    return errs, "; ".join(one(x) for x in errs[:3])


def _import_count(cfg, api: str, answer: dict, key: str, default: int) -> int:
    """The count an import API answered: a non-negative integer, as documented, or one line saying what came."""
    from ..output.elasticsearch.answers import what

    n = answer.get(key, default)
    if type(n) is not int or n < 0:
        raise UserError(f"{display_url(cfg.kibana_url)}: {api} answered {key} {what(n)}, not a count")
    return n


def kibana_import(cfg, creds: dict, flavor: str, api: str, filename: str, payload: bytes,
                  deadline: float = 0.0) -> dict:
    """POST `payload` as the multipart `file` field to Kibana's `api` (in elasticsearch.kibana_space)."""
    import http.client
    import ssl
    import urllib.error
    import urllib.request
    import uuid

    boundary = "otids-" + uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            f"Content-Type: application/ndjson\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    base = cfg.kibana_url.rstrip("/")
    space = f"/s/{cfg.kibana_space}" if cfg.kibana_space else ""
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}",
               ("kbn-xsrf" if flavor == "elasticsearch" else "osd-xsrf"): "true", **auth_header(creds)}
    req = urllib.request.Request(f"{base}{space}{api}", data=body, headers=headers, method="POST")
    ctx = None
    if base.startswith("https:"):
        ctx = ssl.create_default_context(cafile=cfg.ca_file)
        if cfg.client_cert:
            ctx.load_cert_chain(cfg.client_cert, cfg.client_key)
        if not cfg.verify_certs:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    name = api.split("?")[0]
    while True:
        try:
            with urllib.request.urlopen(req, timeout=cfg.timeout, context=ctx) as r:
                answer = r.read(_ANSWER_MAX + 1)  # an import answer is kilobytes: never a whole stream
                if len(answer) <= _ANSWER_MAX and r.length:  # read by size, a cut body comes back short
                    raise http.client.IncompleteRead(answer, r.length)  # without a word: say it as read() does
            break
        except urllib.error.HTTPError as e:
            try:
                text = e.read(_ERROR_PEEK).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):  # the error page itself cut short
                text = "(the error body was cut short)"
            if e.code == 503 and time.monotonic() < deadline:  # Kibana still starting
                time.sleep(2)
                continue
            text = " ".join(text.split())[:300]
            raise UserError(f"{display_url(cfg.kibana_url)}: {name} failed: HTTP {e.code} {text}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            # HTTPException: a body shorter than its Content-Length (IncompleteRead), a status line that is
            # not HTTP, a header line past http.client's limit: the answer was not read, as if none came
            if time.monotonic() < deadline:
                time.sleep(2)
                continue
            why = getattr(e, "reason", None) or f"{type(e).__name__}: {e}"
            raise UserError(f"{display_url(cfg.kibana_url)}: {name}: {' '.join(str(why).split())[:300]}") from None
    if len(answer) > _ANSWER_MAX:
        raise UserError(f"{display_url(cfg.kibana_url)}: {name} answered with more than {_ANSWER_MAX:,} bytes "
                        f"(an import answer is a few kilobytes): {answer[:80]!r}")
    try:
        doc = json.loads(answer or b"{}")
    except (ValueError, RecursionError):  # a proxy's HTML page, a cut answer, JSON nested past the parser
        doc = None  # (said as the not-an-object answers are: what came back, quoted)
    if not isinstance(doc, dict):
        raise UserError(f"{display_url(cfg.kibana_url)}: {name} answered with something that is not JSON: "
                        f"{answer[:80]!r}")
    return doc


_ERROR_PEEK = 65536  # bytes of an error answer read to quote its start
_ANSWER_MAX = 16 << 20  # bytes of a Kibana import answer read at most (it lists one result per object sent)


def cmd_package(args) -> int:
    from pathlib import Path

    from ..output import fleet
    from ..output.fields import load_fields

    fs = load_fields()
    lic = Path(__file__).resolve().parents[2] / "LICENSE"
    done = fleet.write_package(fs, args.output, force=args.force,
                               license_text=lic.read_text(encoding="utf-8") if lic.is_file() else None)
    print(f"otids: wrote integration package {fleet.NAME} {fleet.__version__} (format "
          f"{fleet.FORMAT_VERSION}) to {args.output}: {done}")
    return 0


def cmd_generate(args) -> int:
    from ..output import esgen, kibana
    from ..output.fields import load_fields

    fs = load_fields()
    files = esgen.generated_files(fs)
    stale = []
    missing = set()
    for rel, content in files.items():
        path = os.path.join(args.out, rel)
        try:
            with open(path, encoding="utf-8") as fh:
                same = fh.read() == content
        except OSError:
            same = False
            missing.add(rel)
        if same:
            continue
        stale.append(rel)
        if not args.check:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(content)
    for d, title, groups in kibana.missing_panels(fs):
        print(f"otids: note: panel '{title}' ({d}) left out until field group(s) {', '.join(groups)} exist")
    if args.check:
        if len(missing) == len(files):
            raise UserError(f"{os.path.abspath(args.out)}: none of the generated files is there (deploy/, "
                            f"docs/FIELDS.md): not an otids checkout; run it in one or give --out DIR")
        for rel in stale:
            print(f"otids: {rel} is {'missing' if rel in missing else 'stale'}: run `otids es generate`",
                  file=sys.stderr)
        return 1 if stale else 0
    print(f"otids: {len(files)} generated file(s), {len(stale)} changed, from {len(fs)} fields in "
          f"{len(fs.groups)} groups")
    return 0


def cmd_validate(args) -> int:
    from ..output.fields import load_fields

    fs = load_fields()
    bad = docs = 0
    for path in args.files:
        try:
            fh = open(path, "rb")
        except OSError as e:
            raise UserError(f"{path}: {e.strerror}") from None
        with fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                docs += 1
                try:
                    doc = json.loads(line.decode("utf-8"))
                except UnicodeDecodeError as e:
                    print(f"{path}:{n}: not UTF-8 text (byte {e.start} of the line)")
                    bad += 1
                    continue
                except ValueError as e:
                    print(f"{path}:{n}: not JSON: {e}")
                    bad += 1
                    continue
                except RecursionError:  # json's decoder recurses per level of nesting
                    print(f"{path}:{n}: not JSON: nested too deep to read")
                    bad += 1
                    continue
                issues = fs.validate(doc)
                bad += bool(issues)
                for i in issues:
                    print(f"{path}:{n}: {i}")
    print(f"otids: {docs} document(s), {bad} with problems", file=sys.stderr)
    return 1 if bad else 0


_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT")


def _load_shape(doc: dict) -> str | None:
    """What makes a parsed line unfit to ship (said in a few words), or None. The `_id`, the data stream and,
    in index mode, the index's month come from these fields: a value of another type would fail the whole
    bulk request (retried and spooled for ever, never dead-lettered) or stop the sender."""
    from ..output.elasticsearch.answers import what

    ev, ts = doc["event"], doc["@timestamp"]
    if not isinstance(ev, dict):
        return f"event is {what(ev)}, not an object"
    if not isinstance(ts, str) or not _RFC3339.match(ts):
        return f"@timestamp is {what(ts)}, not an RFC 3339 time"
    for key in ("id", "kind", "dataset"):
        if key in ev and not isinstance(ev[key], str):
            return f"event.{key} is {what(ev[key])}, not a string"
    if "rule" in doc and not isinstance(doc["rule"], dict):
        return f"rule is {what(doc['rule'])}, not an object"
    return None


def cmd_load(args) -> int:
    from ..output.elasticsearch.shipper import Shipper
    from ..output.elasticsearch.sinks import cluster_fields
    from ..output.esgen import stream_name
    from ..output.ndjson import doc_id

    cfg = _load_cfg(args)
    for path in args.files:  # every file readable before anything is sent or spooled
        if os.path.isdir(path):
            raise UserError(f"{path}: is a directory, not an NDJSON file")
        if not os.access(path, os.R_OK):
            raise UserError(f"{path}: {'no such file' if not os.path.exists(path) else 'not readable'}")
    # The shipper replays the spool at once when there is one (or when no file is given: replaying it is the
    # job); else it comes with the first document, so a file that is not otids output leaves no spool behind.
    shipper = Shipper(cfg.url, cfg) if not args.files or os.path.isdir(cfg.spool_dir) else None
    n = 0
    try:
        for path in args.files:
            try:
                fh = open(path, "rb")
            except OSError as e:
                raise UserError(f"{path}: {e.strerror}") from None
            with fh:
                for lineno, raw in enumerate(fh, 1):
                    try:
                        line = raw.decode("utf-8").strip()
                    except UnicodeDecodeError:
                        raise UserError(f"{path}:{lineno}: not an otids document (not UTF-8 text)") from None
                    if not line:
                        continue
                    try:
                        doc = json.loads(line)
                        ev = doc["event"]
                        ts = doc["@timestamp"]
                    except (ValueError, KeyError, TypeError, RecursionError):
                        raise UserError(f"{path}:{lineno}: not an otids document") from None
                    wrong = _load_shape(doc)
                    if wrong:  # before, an AttributeError here, or an _id no cluster takes poisoning the spool
                        raise UserError(f"{path}:{lineno}: not an otids document ({wrong})")
                    did = ev.get("id") or doc_id(line)
                    alert = ev.get("kind") == "alert"
                    dataset = "otids.alert" if alert else ev.get("dataset", "otids.unknown")
                    # which sensor wrote the file is not known here: no observer.* / host.*
                    doc = cluster_fields(doc, dataset, cfg.namespace, None)
                    if shipper is None:
                        shipper = Shipper(cfg.url, cfg)
                    shipper.put("alerts" if alert else "events", stream_name(dataset, cfg.namespace), did, ts,
                                json.dumps(doc, ensure_ascii=False, separators=(",", ":")))
                    n += 1
    finally:
        if shipper is not None:
            shipper.close()
    if shipper is None:
        print("otids: no document in the given file(s) and no spool; nothing sent")
        return 0
    print(f"otids: {n:,} document(s) read; {shipper.summary()}")
    failure = shipper.failure()
    if failure:
        print(f"otids: error: {failure}", file=sys.stderr)
    return 1 if failure else 0
