"""Omnilingo's front ends: the Gradio web UI and the command line. No model code here."""
