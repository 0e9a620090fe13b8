"""Omnilingo's pipeline: one module a stage, no UI code."""
