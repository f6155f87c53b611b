"""`otids es setup` against answers of the wrong shape from the cluster and from Kibana (issue #16, the
one-line-error rule): a stand-in server on 127.0.0.1 (es_helpers.Recorder) answers one request with JSON
of another shape than the API documents, JSON nested past the parser, a body shorter than its
Content-Length or bytes that are not HTTP, and everything else as Elasticsearch and Kibana do. Every case
ends with exit 2 and one line naming the URL and what came back; before, each of them ended with
"internal error" (an AttributeError, KeyError, TypeError, ValueError, OverflowError, RecursionError,
IncompleteRead or opensearch-py SerializationError traceback)."""
from __future__ import annotations

import json
import re

import pytest
from es_helpers import RawAnswer, Recorder

from ids.cli import main


def _j(v) -> bytes:
    return json.dumps(v).encode()


DEEP = b"[" * 100_000 + b"]" * 100_000
OK_OBJECTS = RawAnswer(200, _j({"success": True, "successCount": 1, "errors": []}))

# name: (distribution, {"METHOD path" or "kibana": [answers]}, what the line must say)
CASES = {
    # GET / (connect)
    "root_version_string": (None, {"GET /": [RawAnswer(200, _j({"name": "x", "version": "9.1.0"}))]},
                            "GET / has no version object (not Elasticsearch or OpenSearch?): version is the string '9.1.0'"),
    "root_version_null": (None, {"GET /": [RawAnswer(200, _j({"version": None}))]},
                          "GET / has no version object (not Elasticsearch or OpenSearch?): version is missing (or null)"),
    "root_version_list": (None, {"GET /": [RawAnswer(200, _j({"version": [9, 1]}))]}, "version is a JSON list: [9,1]"),
    "root_deep": (None, {"GET /": [RawAnswer(200, DEEP)]}, "unexpected answer: GET / answered JSON nested too deep to read"),
    # setup's GETs, in each API's documented shape or not
    "ilm_list": (None, {"GET /_ilm/policy/otids-alerts": [RawAnswer(200, b"[1]")]},
                 "setup failed: unexpected answer: GET /_ilm/policy/otids-alerts: the answer is a JSON list: [1], "
                 "not the ilm API's answer"),
    "ilm_meta_string": (None, {"GET /_ilm/policy/otids-alerts": [
        RawAnswer(200, _j({"otids-alerts": {"policy": {"_meta": "x"}}}))]}, "otids-alerts.policy._meta is the string 'x'"),
    "pipeline_list": (None, {"GET /_ingest/pipeline/otids@ingest": [RawAnswer(200, _j({"otids@ingest": [1]}))]},
                      "otids@ingest is a JSON list: [1]"),
    "templates_string": (None, {"GET /_index_template/logs-otids.alert": [RawAnswer(200, _j({"index_templates": "x"}))]},
                         "index_templates is the string 'x'"),
    "template_entry_number": (None, {"GET /_index_template/logs-otids.alert": [
        RawAnswer(200, _j({"index_templates": [5]}))]}, "an entry of index_templates is a JSON int: 5"),
    "template_no_body": (None, {"GET /_component_template/otids@mappings": [
        RawAnswer(200, _j({"component_templates": [{"name": "otids@mappings"}]}))]},
        "component_template of an entry is missing (or null)"),
    "template_deep": (None, {"GET /_index_template/logs-otids.alert": [RawAnswer(200, DEEP)]},
                      "GET /_index_template/logs-otids.alert answered JSON nested too deep to read"),
    # OpenSearch: opensearch-py's SerializationError is no TransportError; ISM needs its sequence numbers
    "os_root_deep": ("opensearch", {"GET /": [RawAnswer(200, DEEP)]}, "GET / answered JSON nested too deep to read"),
    "os_template_html": ("opensearch", {"GET /_index_template/logs-otids.alert": [
        RawAnswer(200, b"<html><body>Login</body></html>", ctype="text/html")]},
        "GET /_index_template/logs-otids.alert answered something that is not JSON: Unknown mimetype"),
    "os_ism_policy_string": ("opensearch", {"GET /_plugins/_ism/policies/otids-alerts": [
        RawAnswer(200, _j({"policy": "x"}))]}, "GET /_plugins/_ism/policies/otids-alerts: policy is the string 'x'"),
    "os_ism_no_seq_no": ("opensearch", {"GET /_plugins/_ism/policies/otids-alerts": [
        RawAnswer(200, _j({"policy": {"description": "otids v1"}}))]}, "_seq_no is missing (or null)"),
    "os_ism_description_int": ("opensearch", {"GET /_plugins/_ism/policies/otids-alerts": [
        RawAnswer(200, _j({"_seq_no": 0, "_primary_term": 1, "policy": {"description": 5}}))]}, None),
    # Kibana's saved-objects import
    "kibana_count_string": (None, {"kibana": [RawAnswer(200, _j({"success": True, "successCount": "abc"}))]},
                            "/api/saved_objects/_import answered successCount the string 'abc', not a count"),
    "kibana_count_null": (None, {"kibana": [RawAnswer(200, _j({"success": True, "successCount": None}))]},
                          "answered successCount null, not a count"),
    "kibana_count_infinite": (None, {"kibana": [RawAnswer(200, b'{"success": true, "successCount": 1e400}')]},
                              "answered successCount a JSON float: inf, not a count"),
    "kibana_count_list": (None, {"kibana": [RawAnswer(200, _j({"success": True, "successCount": [1]}))]},
                          "answered successCount a JSON list: [1], not a count"),
    "kibana_count_negative": (None, {"kibana": [RawAnswer(200, _j({"success": True, "successCount": -3}))]},
                              "answered successCount a JSON int: -3, not a count"),
    "kibana_errors_number": (None, {"kibana": [RawAnswer(200, _j({"success": False, "errors": 5}))]},
                             "saved objects import reported 1 error(s): 5"),
    "kibana_errors_strings": (None, {"kibana": [RawAnswer(200, _j({"success": False, "errors": ["boom", "bang"]}))]},
                              "saved objects import reported 2 error(s): boom; bang"),
    "kibana_error_string": (None, {"kibana": [RawAnswer(200, _j({"success": False, "errors": [
        {"type": "dashboard", "id": "d1", "error": "conflict"}]}))]}, "reported 1 error(s): dashboard d1: conflict"),
    "kibana_success_string": (None, {"kibana": [RawAnswer(200, _j({"success": "yes"}))]},
                              "/api/saved_objects/_import did not report success: a JSON dict: {\"success\":\"yes\"}"),
    "kibana_deep": (None, {"kibana": [RawAnswer(200, b'{"errors": ' + DEEP + b"}")]},
                    "/api/saved_objects/_import answered with something that is not JSON: b'{\"errors\": [[[["),
    "kibana_cut_200": (None, {"kibana": [RawAnswer(200, b'{"success": true', length=100)]},
                       "/api/saved_objects/_import: IncompleteRead: IncompleteRead(16 bytes read, 84 more expected)"),
    "kibana_cut_502": (None, {"kibana": [RawAnswer(502, b"<html>Bad", ctype="text/html", length=5000)]},
                       "/api/saved_objects/_import failed: HTTP 502 <html>Bad"),
    "kibana_not_http": (None, {"kibana": [RawAnswer(200, b"", wire=b"SSH-2.0-OpenSSH_9.6\r\n\r\n")]},
                        "/api/saved_objects/_import: BadStatusLine: SSH-2.0-OpenSSH_9.6"),
    # the detection-rules import
    "rules_count_string": (None, {"kibana": [OK_OBJECTS, RawAnswer(200, _j({"success": True, "success_count": "7",
                                                                            "errors": []}))]},
                           "/api/detection_engine/rules/_import answered success_count the string '7', not a count"),
    "rules_errors_number": (None, {"kibana": [OK_OBJECTS, RawAnswer(200, _j({"success": False, "errors": 5}))]},
                            "detection rules import reported 1 error(s): 5"),
    "rules_errors_object": (None, {"kibana": [OK_OBJECTS, RawAnswer(200, _j({"success": True, "errors": {"a": 1}}))]},
                            "detection rules import reported 1 error(s): None: None"),
    "rules_error_string": (None, {"kibana": [OK_OBJECTS, RawAnswer(200, _j({"success": False, "errors": [
        {"rule_id": "otids-1", "error": "denied"}]}))]}, "reported 1 error(s): otids-1: denied"),
}


@pytest.fixture(scope="module")
def fields():
    from ids.output.fields import load_fields
    return load_fields()


@pytest.fixture(autouse=True)
def fields_once(fields, monkeypatch):
    """The field definitions are not under test here: read once (a second each with the YAML composer),
    not twice per case."""
    import ids.output.fields
    monkeypatch.setattr(ids.output.fields, "load_fields", lambda *a, **k: fields)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    d = tmp_path_factory.mktemp("setup-answers")
    p = d / "otids.yaml"
    p.write_text(f"elasticsearch:\n  spool_dir: {d / 'spool'}\n  timeout: 5\n")
    return str(p)


@pytest.mark.parametrize("case", sorted(CASES))
def test_wrong_answer_to_setup_is_one_line_exit_2(case, cfg, capsys):
    dist, raws, says = CASES[case]
    rec = Recorder(distribution=dist, version="2.11.0" if dist else "9.1.0")
    try:
        for key, answers in raws.items():
            if key == "kibana":
                rec.kibana_raw = list(answers)
            else:
                rec.path_raw[key] = list(answers)
        rc = main(["es", "setup", "--es", rec.url, "--kibana", rec.url, "-c", cfg])
        err = capsys.readouterr().err
        left = rec.kibana_raw + [a for v in rec.path_raw.values() for a in v]
    finally:
        rec.close()
    assert not left, f"the hostile answer was never asked for: {case}"
    if says is None:  # a value that only means "no otids version": taken as unversioned and upgraded
        assert rc == 0 and err == "", err
        return
    assert rc == 2, err
    assert "internal error" not in err and err.count("\n") == 1, err
    assert re.match(rf"otids: error: {re.escape(rec.url)}/?: ", err), err
    assert says in err, err
    assert len(err) < 600, len(err)


def test_a_kibana_answer_past_the_cap_is_refused_unread(cfg, capsys, monkeypatch):
    """Kibana's import answer is read up to a cap (16 MiB; 4 KB here), not whole: a proxy or a hostile
    server streaming gigabytes with status 200 is one line, exit 2, with the memory of the cap."""
    import ids.commands.es as es
    monkeypatch.setattr(es, "_ANSWER_MAX", 4096)
    rec = Recorder()
    try:
        rec.kibana_raw = [RawAnswer(200, b'{"success": true, "errors": [' + b'{"id": "x"},' * 2000 + b'{}]}')]
        rc = main(["es", "setup", "--es", rec.url, "--kibana", rec.url, "-c", cfg])
        err = capsys.readouterr().err
    finally:
        rec.close()
    assert rc == 2 and err.count("\n") == 1, err
    assert "/api/saved_objects/_import answered with more than 4,096 bytes (an import answer is a few" in err, err
