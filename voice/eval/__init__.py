"""Scoring recorded calls: a suite of questions and expectations (`suite`), running it against a
server (`run`), the report (`report`) and word error rate (`wer`)."""
