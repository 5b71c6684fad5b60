import warnings

import pydicom.data


def test_test_data_comes_from_installed_packages_only() -> None:
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        files = pydicom.data.get_testdata_files("*.dcm")
    assert len(files) > 100  # pydicom's own files plus pydicom-data
    assert pydicom.data.get_testdata_file("693_UNCR.dcm") is not None
