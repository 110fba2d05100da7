"""A small bundled website the demo crawl fetches from 127.0.0.1.

The pages under ``pages/`` are written for this project. Each one exists to exercise a stage:
English articles that should survive to training, pages in other languages, near and exact
duplicates, low-quality pages, PII, a blocklisted ``/casino/`` section and a robots-disallowed
``/private/`` page.
"""

from pipeline_lib.sample_site.server import PAGES_DIR, RequestLog, SampleSiteURL, serve_sample_site

__all__ = ["PAGES_DIR", "RequestLog", "SampleSiteURL", "serve_sample_site"]
