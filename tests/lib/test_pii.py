"""PII stage: each entity type, the operators, private IPs, max_spans, offline use, no leaks."""

from __future__ import annotations

import json
import logging
import socket

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from pipeline_lib.config import ConfigError, parse_config
from pipeline_lib.pii import PiiScrubber, PiiStage
from pipeline_lib.pii.anonymize import FAKE_VALUES

# Values that pass presidio's validators (Luhn, IBAN checksum, SSN rules, public suffix).
SAMPLES = {
    "EMAIL_ADDRESS": "jane.doe@university.edu",
    "PHONE_NUMBER": "(212) 555-7341",
    "IP_ADDRESS": "86.121.97.248",
    "CREDIT_CARD": "4007 0707 5369 0781",
    "IBAN_CODE": "GB56HXDO88167774656119",
    "US_SSN": "853-37-1694",
}
PLACEHOLDERS = {"EMAIL_ADDRESS": "<EMAIL>", "PHONE_NUMBER": "<PHONE>", "IP_ADDRESS": "<IP>",
                "CREDIT_CARD": "<CREDIT_CARD>", "IBAN_CODE": "<IBAN>", "US_SSN": "<SSN>"}
ALL_PII_TEXT = ("Write to jane.doe@university.edu or call (212) 555-7341. Server 86.121.97.248 logged "
                "card 4007 0707 5369 0781, IBAN GB56HXDO88167774656119 and SSN 853-37-1694.")


def stage(**pii) -> PiiStage:
    return PiiStage(parse_config({"pii": pii}))


def docs(*texts) -> pa.Table:
    return pa.table({"id": [str(i) for i in range(len(texts))], "url": ["http://x.test/"] * len(texts),
                     "text": pa.array(list(texts), pa.string())})


@pytest.fixture(scope="module")
def default_stage() -> PiiStage:
    return PiiStage(parse_config({}))


@pytest.fixture(scope="module")
def fast_scrubbers() -> tuple[PiiScrubber, PiiScrubber]:
    return PiiScrubber(parse_config({})), PiiScrubber(parse_config({"pii": {"fast_path": False}}))


@pytest.mark.parametrize("entity", sorted(SAMPLES))
def test_each_entity_type_is_replaced_by_its_placeholder(default_stage, entity):
    value = SAMPLES[entity]
    result = default_stage.process(docs(f"Here it is: {value} - thanks."))
    text = result.kept.column("text")[0].as_py()
    assert value not in text
    assert text == f"Here it is: {PLACEHOLDERS[entity]} - thanks."
    assert result.counters[f"pii.{entity}"] == 1
    assert result.kept.column("pii_spans").to_pylist() == [1]


@pytest.mark.parametrize("fast_path", [True, False])
def test_fast_path_and_plain_analyzer_agree(fast_path):
    st = stage(fast_path=fast_path)
    text = st.process(docs(ALL_PII_TEXT)).kept.column("text")[0].as_py()
    assert text == ("Write to <EMAIL> or call <PHONE>. Server <IP> logged card <CREDIT_CARD>, "
                    "IBAN <IBAN> and SSN <SSN>.")


def test_text_without_pii_is_untouched_and_nothing_rejected(default_stage):
    plain = "The 2019 season had 12 games; scores were 3-1, 2-2 and 10.5 points per game on avg."
    result = default_stage.process(docs(plain, None, ""))
    assert result.kept.column("text").to_pylist() == [plain, None, ""]
    assert result.rejected.num_rows == 0
    assert result.kept.column("pii_spans").to_pylist() == [0, 0, 0]


def test_invalid_numbers_are_not_replaced(default_stage):
    # Fails Luhn, fails the IBAN checksum, an SSN area number never issued, an out-of-range octet.
    text = "card 4007 0707 5369 0782, IBAN GB56HXDO88167774656118, SSN 666-37-1694, ip 300.1.2.3"
    assert default_stage.process(docs(text)).kept.column("text")[0].as_py() == text


def test_private_and_reserved_ips_are_kept_by_default_like_fineweb(default_stage):
    text = "lan 192.168.1.20, loopback 127.0.0.1, doc net 203.0.113.5, public 8.8.4.4"
    result = default_stage.process(docs(text))
    assert result.kept.column("text")[0].as_py() == "lan 192.168.1.20, loopback 127.0.0.1, doc net 203.0.113.5, public <IP>"
    assert result.counters["pii.IP_ADDRESS"] == 1
    assert result.counters["pii.IP_ADDRESS_private_kept"] == 3


def test_private_ips_replaced_when_configured():
    result = stage(keep_private_ips=False).process(docs("lan 192.168.1.20 and 8.8.4.4"))
    assert result.kept.column("text")[0].as_py() == "lan <IP> and <IP>"


def test_fake_operator_uses_fineweb_values_in_turn():
    st = stage(operator="fake")
    text = st.process(docs("a@mail.com b@mail.com c@mail.com from 8.8.8.8, 1.1.1.1")).kept.column("text")[0].as_py()
    emails, ips = FAKE_VALUES["EMAIL_ADDRESS"], FAKE_VALUES["IP_ADDRESS"]
    assert sorted(text.split(" from ")[0].split()) == sorted([emails[0], emails[1], emails[0]])
    assert set(text.split(" from ")[1].split(", ")) == {ips[0], ips[1]}
    # Deterministic per document: the same input gives the same output whatever ran before.
    assert st.process(docs("x@mail.com")).kept.column("text")[0].as_py() in emails
    assert st.process(docs("x@mail.com")).kept.column("text").to_pylist() == \
        st.process(docs("x@mail.com")).kept.column("text").to_pylist()


def test_hash_operator_is_salted_and_stable():
    salt_a, salt_b = "a-salt-of-16-bytes!", "another-salt-16bytes"
    out_a = stage(operator="hash", hash_salt=salt_a).process(docs("mail jane@corp.com", "jane@corp.com"))
    out_b = stage(operator="hash", hash_salt=salt_b).process(docs("mail jane@corp.com"))
    first, second = out_a.kept.column("text").to_pylist()
    digest = first.removeprefix("mail ")
    assert len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)
    assert second == digest  # same value, same salt -> same hash
    assert out_b.kept.column("text")[0].as_py() != first  # another salt -> another hash


def test_hash_salt_must_be_long_enough():
    with pytest.raises(ConfigError, match="hash_salt"):
        parse_config({"pii": {"hash_salt": "short"}})


@pytest.mark.parametrize("pii", [{"operator": "hash"}, {"operators": {"EMAIL_ADDRESS": "hash"}}])
def test_the_hash_operator_needs_a_salt(pii):
    # Without one, presidio salted every value at random: a shard redone after a kill differed from
    # the uninterrupted run's, and the same address hashed two ways in one document.
    with pytest.raises(ConfigError, match="the hash operator needs pii.hash_salt"):
        parse_config({"pii": pii})
    parse_config({"pii": {**pii, "hash_salt": "a-salt-of-16-bytes!"}})
    parse_config({"pii": {**pii, "enabled": False}})  # a run dir recorded so still loads (training needs no PII)


def test_mask_operator_and_per_entity_overrides():
    st = stage(operator="mask", mask_char="#", operators={"EMAIL_ADDRESS": "placeholder"},
               placeholders={"EMAIL_ADDRESS": "[email]"})
    text = st.process(docs("jane@corp.com / 853-37-1694")).kept.column("text")[0].as_py()
    assert text == "[email] / ###########"


def test_only_configured_entities_are_touched():
    st = stage(entities=["EMAIL_ADDRESS"])
    text = st.process(docs(ALL_PII_TEXT)).kept.column("text")[0].as_py()
    assert "<EMAIL>" in text and SAMPLES["PHONE_NUMBER"] in text and SAMPLES["US_SSN"] in text


def test_max_spans_rejects_with_reason_and_scrubs_the_rejected_copy():
    result = stage(max_spans=2).process(docs(ALL_PII_TEXT, "just jane@corp.com"))
    assert result.kept.column("id").to_pylist() == ["1"]
    assert result.rejected.column("reject_reason").to_pylist() == ["pii_too_many_spans"]
    rejected_text = result.rejected.column("text")[0].as_py()
    assert not any(v in rejected_text for v in SAMPLES.values())


def test_disabled_stage_keeps_everything_unchanged():
    result = stage(enabled=False).process(docs(ALL_PII_TEXT))
    assert result.kept.column("text")[0].as_py() == ALL_PII_TEXT


def test_no_network_access_while_building_and_scrubbing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    st = PiiStage(parse_config({"pii": {"fast_path": False}}))  # the analyzer engine path too
    out = st.process(docs(ALL_PII_TEXT, "mail to someone@sub.example.co.uk")).kept
    assert out.column("text").to_pylist()[1] == "mail to <EMAIL>"
    scrubber = PiiScrubber(parse_config({}))
    assert scrubber.scrub("x someone@domain.org")[0] == "x <EMAIL>"


def test_no_found_value_reaches_logs_counters_or_outputs(caplog):
    caplog.set_level(logging.DEBUG)
    result = stage().process(docs(ALL_PII_TEXT, ALL_PII_TEXT.upper()))
    blobs = [caplog.text, json.dumps(result.counters),
             json.dumps(result.kept.to_pylist()), json.dumps(result.rejected.to_pylist())]
    for value in SAMPLES.values():
        for blob in blobs:
            assert value not in blob and value.lower() not in blob.lower()


def scrubbed(st: PiiStage, *texts: str) -> list[str]:
    return st.process(docs(*texts)).kept.column("text").to_pylist()


@pytest.mark.parametrize("written", [
    "Phone: 467 3395", "Mobile: 0490 75 40 81", "Desk: +1-903-140-4508x769", "fax +46 (0)8 928 571 38",
    "call me on (64) 3591-3246?", "office 01.84.17.61.18", "+447700 921 916", "Tel. 0961-7596216",
    "Inquiry\n02-751-1500", "Tel: 021-56692669  021-36070335",
])
def test_phone_numbers_in_many_written_forms(default_stage, written):
    out = scrubbed(default_stage, written)[0]
    assert "<PHONE>" in out and not any(ch.isdigit() for ch in out), out


@pytest.mark.parametrize("text", [
    "the number of students in 2019-2020 rose",  # a year range next to a context word
    "Call now, only $ 1 250 000",  # an amount
    "my driver's license number is 2270-66-1551",  # another identifier's context wins
    "see https://twitter.com/x/status/1234567890123456789 for details",  # a tweet id, not a card
    "The score was 12 - 10, then 3369 24 fans left.",
    "Date: 1978-04-13 12:20:39\nName: T. Arata",  # a timestamp
])
def test_number_like_text_that_is_not_pii_is_left_alone(default_stage, text):
    assert scrubbed(default_stage, text) == [text]


def test_credit_cards_beyond_presidios_pattern(default_stage):
    nineteen, two_series, twelve = "4030874397740603788", "2297051310616322", "675984103431"
    out = scrubbed(default_stage, f"My card {nineteen} expires", f"card # {two_series}",
                   f"my credit card number is {twelve}?", f"reference {twelve} attached")
    assert out[:3] == ["My card <CREDIT_CARD> expires", "card # <CREDIT_CARD>", "my credit card number is <CREDIT_CARD>?"]
    assert out[3] == f"reference {twelve} attached"  # 12 digits count only next to a card word


def test_lower_case_iban_and_ssn_with_context(default_stage):
    out = scrubbed(default_stage, "my iban is gb42nawi04454264788619", "SSN: 853371694", "order 853371694")
    assert out == ["my iban is <IBAN>", "SSN: <SSN>", "order 853371694"]


def test_fast_path_matches_the_analyzer_engine_on_mixed_text():
    pieces = [ALL_PII_TEXT, "Phone:\n358 0594\n", "nothing here 2019 and 42", "ip 10.0.0.1 and 93.184.216.34",
              "Mobile: 723 813 266\nDesk: 5403926876", "mail: a.b-c@d-e.example.org, ", "1234 5678 90"]
    texts = [" ".join(pieces[(i * 3 + j) % len(pieces)] for j in range(i % 4 + 1)) for i in range(20)]
    fast = PiiScrubber(parse_config({}))
    plain = PiiScrubber(parse_config({"pii": {"fast_path": False}}))
    for text in texts:
        assert fast.spans(text)[0] == plain.spans(text)[0]


def test_named_ner_model_that_is_not_installed_fails_clearly_without_download(monkeypatch):
    import spacy.cli

    monkeypatch.setattr(spacy.cli, "download", lambda *a, **k: pytest.fail("tried to download a model"))
    with pytest.raises(RuntimeError, match="not installed"):
        PiiStage(parse_config({"pii": {"entities": ["PERSON", "EMAIL_ADDRESS"], "nlp_model": "xx_no_such_model"}}))


def test_ner_entities_without_a_model_are_skipped_not_guessed():
    st = stage(entities=["PERSON", "EMAIL_ADDRESS"])
    assert scrubbed(st, "Bob Smith wrote from bob@corp.com") == ["Bob Smith wrote from <EMAIL>"]


def test_no_found_value_in_any_file_the_runner_writes(tmp_path, caplog):
    """Kept and rejected shards and the manifest (counters = the funnel's source) hold no PII value."""
    import pyarrow.parquet as pq

    from pipeline_lib import shards
    from pipeline_lib.stage import StageResult, run_shard, write_result

    caplog.set_level(logging.DEBUG)
    fs = shards.filesystem(str(tmp_path))
    src, out = str(tmp_path / "05_dedup"), str(tmp_path / "06_pii")
    table = docs(ALL_PII_TEXT, "short: jane.doe@university.edu", "no pii at all")
    write_result(fs, src, "part-00000", "05_dedup", table.num_rows, StageResult.keep_all(table), "h", [], 0.0)
    summary = run_shard(stage(max_spans=3), fs, src, out, "part-00000")
    assert (summary["kept"], summary["rejected"]) == (2, 1)
    manifest = shards.load_manifest(fs, out, "part-00000")
    assert manifest["counters"]["pii.EMAIL_ADDRESS"] == 2 and manifest["counters"]["rejected.pii_too_many_spans"] == 1
    written = [caplog.text]
    files = [p for p in (tmp_path / "06_pii").rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in files)
    for path in files:
        if path.suffix == ".parquet":  # compressed on disk: compare the decoded values
            written.append(json.dumps(pq.read_table(path).to_pylist(), default=str))
        else:
            written.append(path.read_bytes().decode("utf-8", "replace"))
    for value in SAMPLES.values():
        assert not any(value in blob for blob in written), value


PIECES = ["0", "1", "4", "9", " ", "-", ".", "(", ")", "+", "@", ":", "/", "x", "a", "GB", "\n", "٣", "²", "１",
          "call ", "card ", "ssn ", "iban ", "e.com", "212-555-7341", "4111 1111 1111 1111", "8.8.8.8", "::1"]


@settings(max_examples=150, deadline=None)
@given(hst.lists(hst.sampled_from(PIECES), max_size=60), hst.booleans())
def test_arbitrary_text_never_crashes_and_paths_agree(fast_scrubbers, pieces, swap):
    text = "".join(pieces[::-1] if swap else pieces)
    fast, plain = fast_scrubbers
    new_text, spans, _ = fast.scrub(text)
    assert isinstance(new_text, str)
    assert all(0 <= s.start < s.end <= len(text) for s in spans)
    assert all(a.end <= b.start for a, b in zip(spans, spans[1:]))  # sorted, no overlaps
    assert spans == plain.spans(text)[0]


def test_large_string_text_column_and_extra_columns_are_kept(default_stage):
    table = pa.table({"id": ["a", "b"], "text": pa.array(["x jane@corp.com", None], pa.large_string()),
                      "lang_score": [0.9, 0.8]})
    kept = default_stage.process(table).kept
    assert kept.schema.field("text").type == pa.large_string()
    assert kept.column("text").to_pylist() == ["x <EMAIL>", None]
    assert kept.column("lang_score").to_pylist() == [0.9, 0.8]


def test_table_without_text_column_passes_through(default_stage):
    table = pa.table({"id": ["a"], "url": ["http://x.test/"]})
    result = default_stage.process(table)
    assert result.kept.equals(table) and result.rejected.num_rows == 0


# -- overlap resolution: O(n log n), same answer as the quadratic original -----------------------

def _resolve_overlaps_reference(spans):
    """The original quadratic implementation, kept as the reference the fast one must match."""
    kept = []
    for span in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept)


def test_resolve_overlaps_matches_the_quadratic_reference_on_random_spans():
    import random

    from pipeline_lib.pii.detect import Span, resolve_overlaps

    rng = random.Random(1234)
    types = ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "US_SSN"]
    for trial in range(3000):
        n = rng.randint(0, 40)
        width = rng.choice([5, 20, 60, 200])
        spans = []
        for _ in range(n):
            start = rng.randint(0, width)
            end = start + rng.choice([0, 0, 1, 2, 3, rng.randint(0, 30)])  # zero-length spans too
            score = rng.choice([0.4, 0.5, 0.75, 1.0, rng.random()])  # many ties in score
            spans.append(Span(start, end, rng.choice(types), score))
        if spans and rng.random() < 0.3:  # exact duplicates differing only in type: order decides
            spans += [Span(s.start, s.end, rng.choice(types), s.score) for s in rng.sample(spans, len(spans) // 2)]
        rng.shuffle(spans)
        assert resolve_overlaps(list(spans)) == _resolve_overlaps_reference(list(spans)), (trial, spans)


def test_resolve_overlaps_is_fast_on_many_spans():
    from pipeline_lib.pii.detect import Span, resolve_overlaps

    # 200k spans, half of them overlapping a neighbour: quadratic would take hours.
    spans = [Span(i * 10, i * 10 + 8, "PHONE_NUMBER", 0.75) for i in range(100_000)]
    spans += [Span(i * 10 + 5, i * 10 + 12, "IP_ADDRESS", 0.6) for i in range(100_000)]
    kept = resolve_overlaps(spans)
    assert len(kept) == 100_000 and all(s.entity_type == "PHONE_NUMBER" for s in kept)


def test_a_megabyte_of_dense_pii_is_detected_in_bounded_time():
    from pipeline_lib.pii.detect import Detector

    phrase = "call 555-123-4567 or mail a.b@example.com from 10.0.0.1 "
    text = phrase * 18_000  # ~1M chars, 54k spans: the old overlap resolution took minutes
    spans = Detector(parse_config({}).pii).find(text)
    assert len(spans) == 3 * 18_000
    assert {s.entity_type for s in spans} == {"EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS"}
    assert text[spans[0].start:spans[0].end] == "555-123-4567"


@pytest.mark.parametrize("dash", ["\u2013", "\u2011", "\u2212", "\u00a0"])
def test_numbers_written_with_unicode_dashes_or_spaces_are_found(default_stage, dash):
    """Before, an en dash or a no-break space between the digit groups hid the number."""
    text = (f"Call 415{dash}555{dash}2671, card 4007{dash}0707{dash}5369{dash}0781, "
            f"SSN 853{dash}37{dash}1694. Café ☕ closes at six.")
    out = default_stage.process(docs(text)).kept.column("text")[0].as_py()
    assert out == "Call <PHONE>, card <CREDIT_CARD>, SSN <SSN>. Café ☕ closes at six."


def test_a_title_is_scrubbed_like_the_text(default_stage):
    table = pa.table({"id": ["d1"], "url": ["https://shop.example/contact"],
                      "title": ["Contact Jane – jane.roe@gmail.com – +1 415 555 2671"],
                      "text": ["Write to jane.roe@gmail.com or call +1 415 555 2671."]})
    result = default_stage.process(table)
    assert result.kept.column("title").to_pylist() == ["Contact Jane – <EMAIL> – <PHONE>"]
    assert result.counters["pii.title_spans"] == 2 and result.counters["pii.spans"] == 2  # spans: the text's
