"""The crawl2model command line: the top layer, above flows/, tasks/ and pipeline_lib/."""
