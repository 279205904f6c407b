"""Reading studies from disk: file discovery, NIfTI and DICOM input."""
