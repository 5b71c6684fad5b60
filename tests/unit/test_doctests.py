"""The examples in the docstrings of the pure modules run and hold."""

import doctest
from types import ModuleType

import pytest

from neuronova import caches, dicom_json, dicomweb_admin, dicomweb_paths, dicomweb_rules, public_url


@pytest.mark.parametrize("module", [caches, dicom_json, dicomweb_admin, dicomweb_paths, dicomweb_rules, public_url],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module: ModuleType) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
