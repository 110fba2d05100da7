"""configs/pipeline.yaml is generated from the config models, so every knob is there, with its
default and a one-line comment, and it can never drift from the code.

    .venv/bin/python -m pipeline_lib.config_doc > configs/pipeline.yaml

A test regenerates it and compares (tests/lib/test_config.py).
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from pydantic import BaseModel

from pipeline_lib.config import PipelineConfig

HEADER = """\
# crawl2model: every knob, with its default and what it does. Generated from pipeline_lib/config.py
# (python -m pipeline_lib.config_doc > configs/pipeline.yaml); edit the models' descriptions, not this file.
# Copy what you need into your own config: unknown keys are errors, omitted keys take these defaults.
# Relative paths resolve against the folder of the config file that names them, except run.data_root,
# which resolves against the working directory (so `data/runs` lands under the folder you run from).
# Each run dir records its config as config.yaml with every path made absolute.
"""

SECTION_DOCS = {
    "run": "Where the run lives and how it is executed.",
    "source": "Where documents come from: a crawl (00_crawl), WARC files (00_crawl) or cleaned documents (02_extract).",
    "crawl": "The crawler (requests + selectolax): polite, bounded, resumable.",
    "urlfilter": "01_urlfilter: blocklists and FineWeb's URL word rules.",
    "extract": "02_extract: main text with trafilatura.",
    "langid": "03_langid: fastText lid.176.",
    "quality": "04_quality: the heuristic filter chain.",
    "dedup": "05_dedup: exact and MinHash near-duplicate removal across the run (and earlier runs).",
    "pii": "06_pii: presidio, offline.",
    "tokenize": "07_tokens: token ids per document.",
    "train": "08_train: a GPT trained on the token shards.",
}


def _scalar(value: Any) -> str:
    if isinstance(value, dict) and value:
        return json.dumps(value)  # JSON flow mappings are valid YAML
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _emit(model: type[BaseModel], values: dict[str, Any], indent: int, out: list[str]) -> None:
    pad = "  " * indent
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        ann = field.annotation
        value = values[name]
        doc = (field.description or "").strip()
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out.append(f"{pad}{name}:" + (f"  # {doc}" if doc else ""))
            _emit(ann, value, indent + 1, out)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out.append(f"{pad}{name}:" + (f"  # {doc}" if doc else ""))
            for item in value:
                out.append(f"{pad}  - {_scalar(item)}")
        else:
            line = f"{pad}{name}: {_scalar(value)}"
            out.append(f"{line:<40} # {doc}" if doc else line)


def render() -> str:
    defaults = PipelineConfig().model_dump(mode="json")
    out = [HEADER]
    for name, field in PipelineConfig.model_fields.items():
        if field.exclude:
            continue
        out.append(f"# {SECTION_DOCS.get(name, name)}")
        out.append(f"{name}:")
        _emit(field.annotation, defaults[name], 1, out)
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
