"""Datasets: video folders and lists, image folders, the frame cache, and the generated benchmarks."""
