"""Evaluation: score triage quality on any labelled data (`triage eval run | compare | rubric`)."""
