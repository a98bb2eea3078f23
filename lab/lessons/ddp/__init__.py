"""Lesson 16's multi-process part: what each rank checks (:mod:`.checks`), the script torchrun
starts once per rank (:mod:`.worker`), and how the lesson starts torchrun and reads the ranks'
results back (:mod:`.launch`)."""
