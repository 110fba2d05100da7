"""URL blocklist stage: blocklist files, UT1 folders, FineWeb-style URL word rules, contract."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from pipeline_lib.config import parse_config
from pipeline_lib.schema import PAGE_SCHEMA, REJECT_REASON
from pipeline_lib.stage import check_result, stage_class
from pipeline_lib.urlfilter import (Blocklist, UrlFilterStage, UrlWordRules, bundled_list, load_ut1,
                                    split_entry)


def make_stage(tmp_path: Path, lines: list[str] | None = None, **section) -> UrlFilterStage:
    if lines is not None:
        (tmp_path / "block.txt").write_text("# test list\n" + "\n".join(lines) + "\n")
        section.setdefault("blocklist_files", ["block.txt"])  # relative: resolves against base_dir
    return UrlFilterStage(parse_config({"urlfilter": section}, base_dir=str(tmp_path)))


def reasons_for(stage: UrlFilterStage, urls: list) -> dict:
    table = pa.table({"id": [str(i) for i in range(len(urls))], "url": pa.array(urls, pa.string())})
    result = stage.process(table)
    check_result("urlfilter", table.num_rows, result)
    out = {u: None for u in result.kept.column("url").to_pylist()}
    out.update(zip(result.rejected.column("url").to_pylist(), result.rejected.column(REJECT_REASON).to_pylist()))
    return out


def test_registered_stage_class():
    assert stage_class("urlfilter") is UrlFilterStage


def test_domain_entry_blocks_domain_and_subdomains_only(tmp_path):
    stage = make_stage(tmp_path, ["casino.example", "bad.co.uk"], url_word_rules=False)
    got = reasons_for(stage, [
        "http://casino.example/", "https://www.casino.example/a", "http://a.b.casino.example:8080/x",
        "http://notcasino.example/", "http://casino.example.org/", "http://shop.bad.co.uk/x",
        "http://good.co.uk/", "http://CASINO.example/Upper",
    ])
    assert got == {
        "http://casino.example/": "blocklist_domain", "https://www.casino.example/a": "blocklist_domain",
        "http://a.b.casino.example:8080/x": "blocklist_domain", "http://notcasino.example/": None,
        "http://casino.example.org/": None, "http://shop.bad.co.uk/x": "blocklist_domain",
        "http://good.co.uk/": None, "http://CASINO.example/Upper": "blocklist_domain",
    }


def test_public_suffix_parents_are_not_walked(tmp_path):
    # "co.uk" is a public suffix: the walk stops at the registered domain (good.co.uk), so a
    # stray suffix entry cannot take out a whole country.
    stage = make_stage(tmp_path, ["co.uk"], url_word_rules=False)
    assert reasons_for(stage, ["http://good.co.uk/"]) == {"http://good.co.uk/": None}


def test_host_path_prefix_ignores_scheme_and_port_and_respects_boundaries(tmp_path):
    stage = make_stage(tmp_path, ["127.0.0.1/casino/", "example.org/dir", "http://www.example.net/page.html"],
                       url_word_rules=False)
    got = reasons_for(stage, [
        "http://127.0.0.1:18642/casino/x.html", "http://127.0.0.1:18642/casino", "http://127.0.0.1:18642/other",
        "https://example.org/dir", "https://example.org/dir/sub", "https://example.org/dir?q=1",
        "https://example.org/directory", "https://sub.example.org/dir", "http://example.net/page.html?x=1",
        "http://example.net/page.htmlx",
    ])
    assert got == {
        "http://127.0.0.1:18642/casino/x.html": "blocklist_url", "http://127.0.0.1:18642/casino": None,
        "http://127.0.0.1:18642/other": None, "https://example.org/dir": "blocklist_url",
        "https://example.org/dir/sub": "blocklist_url", "https://example.org/dir?q=1": "blocklist_url",
        "https://example.org/directory": None, "https://sub.example.org/dir": None,
        "http://example.net/page.html?x=1": "blocklist_url", "http://example.net/page.htmlx": None,
    }


def test_split_entry_normalises():
    assert split_entry("HTTP://WWW.Example.com:8080/A/b") == ("example.com", "/a/b")
    assert split_entry("example.com") == ("example.com", None)
    assert split_entry("[::1]:80/x") == ("[::1]", "/x")


def test_ut1_layout_categories(tmp_path):
    for cat, domains, urls in [("adult", "adult.example\n", "mixed.example/adult/\n"),
                               ("gambling", "bets.example\n", "")]:
        (tmp_path / "ut1" / cat).mkdir(parents=True)
        (tmp_path / "ut1" / cat / "domains").write_text(domains)
        (tmp_path / "ut1" / cat / "urls").write_text(urls)
    urls = ["http://www.adult.example/", "http://mixed.example/adult/1", "http://mixed.example/news/1",
            "http://bets.example/"]
    default = make_stage(tmp_path, ut1_dir="ut1", url_word_rules=False)  # categories default to adult
    assert reasons_for(default, urls) == {"http://www.adult.example/": "blocklist_domain",
                                          "http://mixed.example/adult/1": "blocklist_url",
                                          "http://mixed.example/news/1": None, "http://bets.example/": None}
    both = make_stage(tmp_path, ut1_dir="ut1", ut1_categories=["adult", "gambling"], url_word_rules=False)
    assert reasons_for(both, urls)["http://bets.example/"] == "blocklist_domain"
    assert both.manifest_extra()["blocklist_entries"] == {"ut1:adult": 2, "ut1:gambling": 1}


def test_ut1_missing_category_is_an_error(tmp_path):
    (tmp_path / "adult").mkdir()
    with pytest.raises(FileNotFoundError):
        load_ut1(tmp_path, ["adlt"], Blocklist())


def test_url_word_rules_each_reason():
    rules = UrlWordRules(["badword"], ["soft", "mushy", "tender"], ["evilsub"], soft_words_min=2)
    assert rules.check("http://x.example/badword/page") == "url_banned_word"
    assert rules.check("http://x.example/badwords/page") is None  # hard words match whole tokens only
    assert rules.check("http://x.example/soft-and-mushy") == "url_soft_words"
    assert rules.check("http://x.example/soft-and-soft") is None  # two different soft words needed
    assert rules.check("http://x.example/very-evil_sub-page") == "url_banned_subword"  # across separators
    assert rules.check("http://x.example/clean/page") is None


def test_bundled_lists_drive_the_default_rules(tmp_path):
    banned, soft, subwords = bundled_list("banned_words.txt"), bundled_list("soft_words.txt"), bundled_list("banned_subwords.txt")
    assert banned and soft and subwords and not any(w.startswith("#") for w in banned + soft + subwords)
    stage = make_stage(tmp_path)
    urls = [f"http://a.example/{banned[0]}/1", f"http://a.example/{soft[0]}-{soft[1]}",
            f"http://a.example/x{subwords[0]}y", "https://www.essex.ac.uk/news/sussex-sex-survey",
            "https://en.wikipedia.org/wiki/Web_crawler"]
    got = reasons_for(stage, urls)
    assert [got[u] for u in urls] == ["url_banned_word", "url_soft_words", "url_banned_subword", None, None]


def test_user_word_lists_replace_bundled(tmp_path):
    (tmp_path / "words.txt").write_text("crawler\n")
    stage = make_stage(tmp_path, banned_words_file="words.txt")
    assert reasons_for(stage, ["https://en.wikipedia.org/wiki/Web_crawler"]) == {
        "https://en.wikipedia.org/wiki/Web_crawler": "url_banned_word"}


def test_bad_urls_are_rejected_with_a_reason_not_a_crash(tmp_path):
    stage = make_stage(tmp_path, ["casino.example"])
    got = reasons_for(stage, [None, "", "   ", "http:///nohost", "http://exa mple.com/", "http://ok.example/"])
    assert got == {None: "url_missing", "": "url_missing", "   ": "url_missing",
                   "http:///nohost": "url_invalid", "http://exa mple.com/": "url_invalid", "http://ok.example/": None}


def test_page_rows_keep_all_columns_and_conserve_rows(tmp_path):
    stage = make_stage(tmp_path, ["casino.example"])
    rows = {name: [None] * 3 for name in PAGE_SCHEMA.names}
    rows.update(id=["a", "b", "c"], url=["http://casino.example/", "http://fine.example/", "http://fine.example/2"],
                html=["<p>x</p>"] * 3)
    table = pa.Table.from_pydict(rows, schema=PAGE_SCHEMA)
    result = stage.process(table)
    check_result("urlfilter", 3, result)
    assert result.kept.schema == PAGE_SCHEMA
    assert result.kept.column("id").to_pylist() == ["b", "c"]
    assert result.rejected.column(REJECT_REASON).to_pylist() == ["blocklist_domain"]


def test_redirect_to_a_blocked_site_is_caught_by_final_url(tmp_path):
    stage = make_stage(tmp_path, ["casino.example"])
    table = pa.table({"id": ["a", "b", "c"], "url": ["http://short.example/1", "http://short.example/2", "http://x.example/"],
                      "final_url": ["https://casino.example/landing", None, "http://x.example/"]})
    result = stage.process(table)
    assert result.rejected.column("id").to_pylist() == ["a"]
    assert result.rejected.column(REJECT_REASON).to_pylist() == ["blocklist_domain"]


def test_table_without_url_column_rejects_every_row(tmp_path):
    result = make_stage(tmp_path).process(pa.table({"id": ["a", "b"]}))
    assert result.kept.num_rows == 0 and result.rejected.column(REJECT_REASON).to_pylist() == ["url_missing"] * 2


def test_disabled_stage_keeps_everything(tmp_path):
    stage = make_stage(tmp_path, ["casino.example"], enabled=False)
    assert reasons_for(stage, ["http://casino.example/"]) == {"http://casino.example/": None}


def test_real_article_urls_mostly_pass(shared_data):
    import json

    urls = [json.loads(p.read_text()).get("url") for p in sorted((shared_data / "extraction").glob("*.json"))]
    urls = [u for u in urls if u]
    assert len(urls) > 50
    stage = UrlFilterStage(parse_config({}))
    got = reasons_for(stage, urls)
    blocked = {u: r for u, r in got.items() if r}
    assert len(blocked) <= len(urls) * 0.05, blocked


def test_urls_no_crawler_could_fetch_are_rejected_and_ordinary_ones_are_not():
    from pipeline_lib.config import parse_config
    from pipeline_lib.urlfilter import UrlFilterStage

    f = UrlFilterStage(parse_config({})).filter
    assert f.reason("javascript:alert(1)") == "url_bad_scheme"
    assert f.reason("mailto:someone@example.org") == "url_bad_scheme"
    assert f.reason("ftp://example.com/a") == "url_bad_scheme"
    assert f.reason("http://127.0.0.1:99999/") == "url_invalid"
    assert f.reason("http://[::1/") == "url_invalid"
    assert f.reason("http://" + "a" * 300 + ".com/") == "url_invalid"
    for ok in ("https://example.com/a", "example.com:8080/path", "http://[::1]:8080/x", "HTTP://Example.COM"):
        assert f.reason(ok) is None, ok


def test_hosts_compare_as_the_crawler_stores_them_and_escapes_are_decoded(tmp_path):
    """A Unicode blocklist entry and the punycode host the crawler stores are one site; fullwidth
    letters and the ideographic full stop fold; /%70orn/ and /%63asino/ are what they spell."""
    stage = make_stage(tmp_path, ["bücher-casino.de", "casino.example", "127.0.0.1/casino/"])
    urls = ["http://xn--bcher-casino-dlb.de/", "http://bücher-casino.de/x", "http://ｃａｓｉｎｏ.example/",
            "http://casino。example/", "http://127.0.0.1/%63asino/x", "http://example.com/%70orn/",
            "http://example.com/ordinary"]
    got = reasons_for(stage, urls)
    assert [got[u] for u in urls] == ["blocklist_domain"] * 4 + ["blocklist_url", "url_banned_word", None]


def test_bundled_subwords_do_not_straddle_ordinary_words(tmp_path):
    stage = make_stage(tmp_path)
    urls = ["https://www.visitessex.com/essex-camping/", "https://www.middlesex.gov/sussex-camera-club",
            "https://news.example/adult-campus-courses", "http://x.example/sexcam/live"]
    got = reasons_for(stage, urls)
    assert [got[u] for u in urls] == [None, None, None, "url_banned_word"]  # a whole-word ban still holds


def test_editing_a_listed_file_redoes_the_shards_and_rebuilds_the_cached_stage(tmp_path):
    # The config named the same file before and after the edit, so its section hash was the same:
    # a rerun skipped the shards and the newly blocked pages flowed on to training.
    import fsspec

    from pipeline_lib.stage import StageResult, build_stage, run_shard, write_result

    fs = fsspec.filesystem("file")
    crawl_dir, out_dir = str(tmp_path / "00_crawl"), str(tmp_path / "01_urlfilter")
    table = pa.table({"id": ["a", "b"], "url": ["https://good.example/x", "https://spam.example/y"]})
    write_result(fs, crawl_dir, "part-00000", "00_crawl", 2, StageResult.keep_all(table), "h", [], 0.0)
    (tmp_path / "block.txt").write_text("# nothing yet\n")
    cfg = parse_config({"urlfilter": {"blocklist_files": ["block.txt"]}}, base_dir=str(tmp_path))
    before = build_stage("urlfilter", cfg)
    first = run_shard(before, fs, crawl_dir, out_dir, "part-00000")
    hash_before = before.config_hash()
    assert (first["kept"], first["rejected"]) == (2, 0)
    assert run_shard(build_stage("urlfilter", cfg), fs, crawl_dir, out_dir, "part-00000").get("skipped")

    (tmp_path / "block.txt").write_text("# now\nspam.example\n")
    stage = build_stage("urlfilter", cfg)
    again = run_shard(stage, fs, crawl_dir, out_dir, "part-00000")
    assert not again.get("skipped") and (again["kept"], again["rejected"]) == (1, 1)
    assert stage is not before and stage.config_hash() != hash_before == before.config_hash()
    assert build_stage("urlfilter", cfg) is stage  # unchanged since: the cached one
    # The default config reads no list file: its hash is the section's, as in manifests written before.
    plain = parse_config({})
    assert UrlFilterStage.input_files(plain) == [] and UrlFilterStage(plain).config_hash() == plain.section_hash("urlfilter")
