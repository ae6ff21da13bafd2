"""Datasets: image folders, generated data, and (later) videos."""
