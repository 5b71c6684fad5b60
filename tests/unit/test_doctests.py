"""The examples in the docstrings of the pure modules run and hold."""

import doctest
from types import ModuleType

import pytest

from neuronova import caches, dicom_json
from neuronova.dicomweb import admin, metadata, paths, rules, urls
from neuronova.htj2k import ingest_pace


@pytest.mark.parametrize("module", [caches, dicom_json, admin, metadata, paths, rules, urls,
                                    ingest_pace],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
