"""Evaluation: ir-measures (:mod:`.measures`), leaderboards, published figures, DPR answer match (:mod:`.qa`)."""
