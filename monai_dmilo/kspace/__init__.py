"""Raw multi-coil k-space: fastMRI-layout files in, magnitude NIfTI volumes and DICOM series out.

* :mod:`.reader`: read and check ``.h5`` files (MONAI's ``FastMRIReader``), infer the mask;
* :mod:`.coils`: coil sensitivities and the smooth phase from the calibration region;
* :mod:`.problem`: crop to the prior's grid, SENSE, zero filling, and the real-valued magnitude
  problem the diffusion solvers solve;
* :mod:`.dicom`: a DICOM MR series of a magnitude volume (pydicom);
* :mod:`.simulate`: multi-coil files from magnitude slices (demo and test data);
* :mod:`.workflow`: the ``bundle/configs/kspace.yaml`` workflow.
"""
from .problem import MagnitudeProblem, build_problem
from .reader import KspaceFile, read_kspace_file

__all__ = ["KspaceFile", "MagnitudeProblem", "build_problem", "read_kspace_file"]
