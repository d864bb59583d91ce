"""Helpers the tests share (bundles, ...); no tests here."""
