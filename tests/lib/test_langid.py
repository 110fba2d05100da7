"""LangIdStage: language + score on every document, FineWeb-style target thresholds."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline_lib.config import PipelineConfig, parse_config
from pipeline_lib.langid import LangIdStage, LanguageIdentifier, default_model_path, normalize

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

TEXTS = {
    "en": "The committee will publish its final report on the state of the river next spring.",
    "fr": "Le comité publiera son rapport final sur l'état de la rivière au printemps prochain.",
    "de": "Der Ausschuss wird seinen Abschlussbericht über den Zustand des Flusses im Frühjahr veröffentlichen.",
}


def doc_table(texts: list[str | None]) -> pa.Table:
    return pa.table({"id": [f"d{i}" for i in range(len(texts))], "url": ["u"] * len(texts),
                     "text": pa.array(texts, pa.string())})


def test_default_model_is_the_packaged_ftz():
    assert default_model_path().endswith("lid.176.ftz") and Path(default_model_path()).is_file()


def test_normalize_makes_one_line():
    assert normalize("  a\nb\t\tc \r\n d  ") == "a b c d"


def test_english_kept_others_rejected_with_reasons():
    stage = LangIdStage(PipelineConfig())
    table = doc_table([TEXTS["en"], TEXTS["fr"], None, "   \n  ", TEXTS["en"] + "\n" + TEXTS["en"]])
    result = stage.process(table)
    assert result.kept.column("id").to_pylist() == ["d0", "d4"]
    assert result.kept.column("language").to_pylist() == ["en", "en"]
    assert all(s >= 0.65 for s in result.kept.column("language_score").to_pylist())
    rejected = {r["id"]: (r["reject_reason"], r["language"]) for r in result.rejected.to_pylist()}
    assert rejected == {"d1": ("lang_not_target", "fr"), "d2": ("lang_no_text", None), "d3": ("lang_no_text", None)}
    assert result.counters["langid.lang_en"] == 2


def test_text_without_a_letter_has_no_language():
    stage = LangIdStage(parse_config({"langid": {"languages": {}}}))  # no target: every language kept
    texts = ["\x00\x00\x00", "12 345 678", "!!! ??? ...", "\U0001f600 \U0001f44d", "\u00bd \u2460 \u00b2 \u2163",
             TEXTS["en"], "x 1 2 3"]
    result = stage.process(doc_table(texts))
    rejected = dict(zip(result.rejected.column("id").to_pylist(), result.rejected.column("reject_reason").to_pylist()))
    assert rejected == {f"d{i}": "lang_no_text" for i in range(5)}
    assert result.kept.column("id").to_pylist() == ["d5", "d6"]


def test_a_shard_without_a_text_column_is_rejected_row_by_row():
    result = LangIdStage(PipelineConfig()).process(doc_table([TEXTS["en"], TEXTS["fr"]]).drop_columns(["text"]))
    assert result.kept.num_rows == 0
    assert result.rejected.column("reject_reason").to_pylist() == ["lang_no_text"] * 2


def test_several_targets_each_with_its_threshold():
    cfg = parse_config({"langid": {"languages": {"fr": 0.5, "de": 1.0}}})
    result = LangIdStage(cfg).process(doc_table([TEXTS["en"], TEXTS["fr"], TEXTS["de"]]))
    assert result.kept.column("language").to_pylist() == ["fr"]
    reasons = dict(zip(result.rejected.column("id").to_pylist(), result.rejected.column("reject_reason").to_pylist()))
    assert reasons == {"d0": "lang_not_target", "d2": "lang_below_threshold"}
    # the score is kept on rejected rows too, so the threshold can be lowered later
    assert result.rejected.column("language_score").to_pylist()[1] > 0.5


def test_accuracy_on_real_sentences():
    if not (SHARED / "langid").is_dir():
        pytest.skip("../shared/data/langid not present")
    ident = LanguageIdentifier()
    for lang in ("en", "de", "ja", "ru"):
        lines = [l for l in (SHARED / "langid" / f"{lang}.txt").read_text(encoding="utf-8").splitlines() if l.strip()][:100]
        preds = ident.predict(lines)
        assert sum(p[0] == lang for p in preds) >= 90, lang


def test_script_check_overrules_the_model_only_where_the_script_is_certain():
    from pipeline_lib.langid import script_allows

    assert script_allows("ja", "東京で会いましょう") and not script_allows("zh", "東京で会いましょう")
    assert not script_allows("ja", "中共十八届三中全会意义常常被跟当年邓小平的对外开放相提并论")
    assert script_allows("zh", "中共十八届三中全会意义常常被跟当年邓小平的对外开放相提并论")
    assert not script_allows("ru", "Україна їде далі") and script_allows("uk", "Україна їде далі")
    assert not script_allows("uk", "Мы были здесь вчера") and script_allows("ru", "Мы были здесь вчера")
    assert script_allows("en", "plain latin text") and script_allows("fr", "texte latin")


def test_a_few_kana_in_english_or_chinese_do_not_make_a_document_japanese():
    # One katakana word used to force "ja" on any document (English with "karaoke" scored ja 0.004).
    from pipeline_lib.langid import script_allows

    english = ("We went to the karaoke bar (カラオケ) after dinner, and everyone sang old songs until the staff "
               "asked us to leave. It was the best night of the whole trip, and we still talk about it.")
    ident = LanguageIdentifier()
    assert ident.predict_one(english)[0] == "en" and ident.predict_one(english)[1] >= 0.65
    assert script_allows("en", english) and script_allows("ja", english)  # ja not ruled out, just not forced
    chinese = "这家店很受欢迎，人气の餐厅每天都排长队，我们等了一个小时才吃上饭，味道确实不错，值得再来。"
    assert not script_allows("ja", chinese) and script_allows("zh", chinese)
    assert script_allows("ja", "東京で会いましょう") and not script_allows("en", "東京で会いましょう")


def test_kana_less_chinese_is_not_called_japanese():
    # lid.176 alone answers 'ja' for this Chinese sentence (from the Leipzig corpus)
    text = "中共十八届三中全会意义常常被跟当年邓小平的对外开放和引入外资相提并论。"
    plain = LanguageIdentifier(lowercase=False, script_check=False).predict([text])[0][0]
    checked = LanguageIdentifier().predict([text])[0][0]
    assert plain == "ja" and checked == "zh"


def test_candidates_restrict_the_answer():
    text = "Mereka pun kemudian melihat Glagah Putih berjalan mendekat."
    assert LanguageIdentifier(candidates=["id", "en"]).predict([text])[0][0] == "id"
