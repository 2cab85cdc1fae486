"""Data only: the shipped byte-level BPE tokenizer (tokenizer.json), loaded by `resnet_bk_hf.tokenization`.

A package (this file) so that setuptools ships the folder as package data without a warning."""
