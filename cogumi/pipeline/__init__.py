"""The whole pipeline: stages in order, skip/resume by manifest, one report."""
