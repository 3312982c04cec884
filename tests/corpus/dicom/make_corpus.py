#!/usr/bin/python3
"""Writes the DICOM reader's test corpus (tests/corpus/dicom/).

Run from anywhere with Debian's Python and pydicom:

    /usr/bin/python3 tests/corpus/dicom/make_corpus.py

The output is deterministic (fixed UIDs, dates and pixel values), so the
files are committed next to this script and tests/test-dicom.c needs no
Python. Every image is tiny (16x16 unless the case is about size).

Each case is either a well-formed CT slice with one thing changed, or a
small folder of slices for the grouping rules. tests/test-dicom.c checks
each file's outcome (used / skipped / error) and reason text; the list of
cases below is mirrored there.

Pixel values of well-formed slices follow one formula so that the test can
check decoded HU exactly: stored value s(r, c) = 8 * (16 * r + c) (unsigned
16-bit, 0..2040), RescaleSlope 1, RescaleIntercept -1024, so
HU(r, c) = 8 * (16 * r + c) - 1024. Cases that change the encoding say how
their values map.
"""
import os
import shutil

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian,
                         SecondaryCaptureImageStorage)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = "2.25.314159265358979323846264338327950288"  # fixed UID root
STUDY = ROOT + ".1"
SERIES = ROOT + ".2"
_counter = [100]


def uid():
    _counter[0] += 1
    return "%s.%d" % (ROOT, _counter[0])


def pattern(rows=16, cols=16):
    r, c = np.mgrid[0:rows, 0:cols]
    return (8 * (16 * r + c)).astype(np.uint16)


def ct(rows=16, cols=16, z=0.0, series=SERIES, instance=1, acq=1,
       pixels=None, sop=None):
    """A well-formed 16x16 axial CT slice at height z."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop or uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = ROOT + ".99"
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20240101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = "ACC1"
    ds.Modality = "CT"
    ds.Manufacturer = "ctphase corpus"
    ds.StudyDescription = "corpus study"
    ds.SeriesDescription = "corpus series"
    ds.PatientName = "Corpus^Test"
    ds.PatientID = "CORPUS1"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.SliceThickness = "2.5"
    ds.KVP = "120"
    ds.GantryDetectorTilt = "0"
    ds.StudyInstanceUID = STUDY
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = 2
    ds.AcquisitionNumber = acq
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-10.0, -10.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = ROOT + ".3"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [0.7, 0.7]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    px = pattern(rows, cols) if pixels is None else pixels
    ds.PixelData = px.tobytes()
    return ds


def path(*parts):
    p = os.path.join(HERE, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def save(ds, *parts):
    ds.save_as(path(*parts), write_like_original=False)


def raw(data, *parts):
    with open(path(*parts), "wb") as f:
        f.write(data)


def main():
    # Start from a clean tree, keeping this script.
    for name in os.listdir(HERE):
        p = os.path.join(HERE, name)
        if name == os.path.basename(__file__):
            continue
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            os.remove(p)

    # -- single files: errors -------------------------------------------
    raw(b"", "empty.dcm")
    raw(b"This is a text file, not DICOM.\n" * 8, "not-dicom.txt")

    good = ct()
    save(good, "valid.dcm")
    with open(path("valid.dcm"), "rb") as f:
        whole = f.read()
    raw(whole[:300], "truncated-header.dcm")  # cut inside the dataset header
    raw(whole[:-100], "truncated-pixels.dcm")  # cut inside PixelData
    raw(whole[:132] + bytes((i * 37 + 11) % 256 for i in range(400)),
        "garbage-after-preamble.dcm")

    ds = ct()
    ds.PixelData = pattern()[:8].tobytes()  # half the rows: 256 of 512 bytes
    save(ds, "short-pixels.dcm")

    ds = ct(pixels=np.zeros((0, 16), np.uint16))
    ds.Rows = 0
    save(ds, "rows-0.dcm")

    ds = ct()
    ds.Rows = 65535  # PixelData stays 16x16
    save(ds, "rows-65535.dcm")

    ds = ct()
    ds.BitsAllocated = 32
    ds.BitsStored = 32
    ds.HighBit = 31
    ds.PixelData = pattern().astype(np.uint32).tobytes()
    save(ds, "bits-32.dcm")

    ds = ct()
    del ds.RescaleIntercept
    del ds.RescaleSlope
    save(ds, "no-rescale.dcm")

    ds = ct()
    del ds.ImagePositionPatient
    save(ds, "no-position.dcm")

    ds = ct()
    del ds.ImageOrientationPatient
    save(ds, "no-orientation.dcm")

    ds = ct()
    del ds.PixelData
    save(ds, "no-pixels.dcm")

    ds = ct()
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = np.repeat(pattern()[:, :, None], 3, axis=2).tobytes()
    save(ds, "rgb.dcm")

    # -- single files: skipped ------------------------------------------
    ds = ct()
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]  # sagittal, as scouts are
    save(ds, "localizer.dcm")

    ds = ct()
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    save(ds, "derived-secondary.dcm")

    ds = ct()
    ds.ImageType = ["DERIVED", "PRIMARY", "AXIAL", "MIP"]
    save(ds, "mip.dcm")

    ds = ct()
    ds.ImageType = ["DERIVED", "PRIMARY", "REFORMATTED"]
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    save(ds, "sagittal.dcm")

    ds = ct()
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    save(ds, "coronal.dcm")

    ds = ct()
    ds.GantryDetectorTilt = "40"
    save(ds, "tilt-40.dcm")

    ds = ct()
    ds.Modality = "US"
    save(ds, "modality-us.dcm")

    ds = ct()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    save(ds, "secondary-capture.dcm")

    ds = ct()
    ds.NumberOfFrames = 2
    ds.PixelData = np.concatenate([pattern(), pattern()]).tobytes()
    save(ds, "multiframe.dcm")

    # -- single files: used, with unusual encodings ---------------------
    # 8-bit: stored 0..255 = (16 r + c) & 255, slope 8, intercept -1024:
    # HU = 8 * ((16 r + c) & 255) - 1024.
    ds = ct()
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.RescaleSlope = "8"
    r, c = np.mgrid[0:16, 0:16]
    ds.PixelData = ((16 * r + c) & 255).astype(np.uint8).tobytes()
    save(ds, "bits-8.dcm")

    # Signed 12-bit in 16 with junk above bit 11: value v = 8*(16r+c) - 1024
    # (-1024..1016) as 12-bit two's complement, bits 12..15 set to 0xA.
    # RescaleIntercept 0: HU = v.
    ds = ct()
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = "0"
    v = pattern().astype(np.int32) - 1024
    ds.PixelData = (((v & 0xFFF) | 0xA000).astype(np.uint16)).tobytes()
    save(ds, "signed12-junk.dcm")

    # Unsigned 12 bits stored at bits 4..15 (HighBit 15): stored s = 8*(16r+c)
    # shifted left by 4, junk in bits 0..3. HU = s - 1024.
    ds = ct()
    ds.BitsStored = 12
    ds.HighBit = 15
    ds.PixelData = ((pattern().astype(np.uint32) << 4) | 0x5).astype(
        np.uint16).tobytes()
    save(ds, "highbit15.dcm")

    # Slope 2.5, intercept -1000: HU = 2.5 * 8 * (16r+c) - 1000.
    ds = ct()
    ds.RescaleSlope = "2.5"
    ds.RescaleIntercept = "-1000"
    save(ds, "slope-2.5.dcm")

    ds = ct()
    del ds.RescaleSlope  # slope alone missing: taken as 1
    save(ds, "no-slope.dcm")

    ds = ct()
    del ds.PixelSpacing
    save(ds, "no-spacing.dcm")

    ds = ct()
    del ds.PixelSpacing
    ds.ImagerPixelSpacing = [0.8, 0.9]
    save(ds, "imager-spacing.dcm")

    ds = ct()
    ds.GantryDetectorTilt = "20"
    c20, s20 = np.cos(np.radians(20)), np.sin(np.radians(20))
    ds.ImageOrientationPatient = [1, 0, 0, 0, float(c20), float(s20)]
    save(ds, "tilt-20.dcm")

    ds = FileDataset(None, {}, preamble=None)  # no preamble, no meta header
    for elem in ct():
        ds.add(elem)
    ds.is_little_endian = True
    ds.is_implicit_VR = True
    ds.save_as(path("no-preamble.dcm"), write_like_original=True)

    # -- folders: grouping ----------------------------------------------
    # duplicate/: the same SOP instance in two files.
    sop = uid()
    save(ct(sop=sop), "duplicate", "a.dcm")
    save(ct(sop=sop), "duplicate", "b.dcm")

    # mixed/: two series (3 slices of A, 2 of B) in one folder.
    sa, sb = ROOT + ".21", ROOT + ".22"
    for i in range(3):
        save(ct(series=sa, z=2.5 * i, instance=i + 1), "mixed", "a%d.dcm" % i)
    for i in range(2):
        ds = ct(series=sb, z=5.0 * i, instance=i + 1)
        ds.SeriesNumber = 3
        save(ds, "mixed", "b%d.dcm" % i)

    # shuffled/: five slices whose InstanceNumbers run against position;
    # file names follow neither. Expected order by z: 0, 2.5, ... 10.
    zs = [5.0, 0.0, 10.0, 2.5, 7.5]
    for k, z in enumerate(zs):
        save(ct(series=ROOT + ".31", z=z, instance=int(100 - z * 4)),
             "shuffled", "f%d.dcm" % k)

    # two-acq/: two acquisition numbers over the same 4 positions.
    for a in (1, 2):
        for i in range(4):
            save(ct(series=ROOT + ".41", z=-2.5 * i, acq=a,
                    instance=(a - 1) * 4 + i + 1), "two-acq",
                 "%d-%d.dcm" % (a, i))

    # repeat-no-acqnum/: the same, without AcquisitionNumber: repeated
    # positions split the series (in InstanceNumber order).
    for a in (1, 2):
        for i in range(4):
            ds = ct(series=ROOT + ".51", z=-2.5 * i,
                    instance=(a - 1) * 4 + i + 1)
            del ds.AcquisitionNumber
            save(ds, "repeat-no-acqnum", "%d-%d.dcm" % (a, i))

    # step-and-shoot/: three rotations numbered 1, 2, 3, each 4 slices,
    # end to end at 2.5 mm, acquired 2 s apart: one acquisition of 12.
    for a in (1, 2, 3):
        for i in range(4):
            z = 10.0 * (a - 1) + 2.5 * i
            ds = ct(series=ROOT + ".61", z=z, acq=a,
                    instance=(a - 1) * 4 + i + 1)
            ds.AcquisitionTime = "1200%02d.500" % (2 * a)
            save(ds, "step-and-shoot", "%d-%d.dcm" % (a, i))

    # size-mix/: four 16x16 slices and one 32x32: the odd one is skipped.
    for i in range(4):
        save(ct(series=ROOT + ".71", z=2.5 * i, instance=i + 1),
             "size-mix", "s%d.dcm" % i)
    save(ct(series=ROOT + ".71", rows=32, cols=32, z=10.0, instance=5),
         "size-mix", "s4.dcm")

    # tilted/: a tilted stack (20 deg, Siemens style: tilted orientation,
    # positions along the tilted normal, spacing 2.5 mm along the normal).
    n = np.array([0.0, -s20, c20])  # row (1,0,0) x column (0,c,s)
    for i in range(4):
        p = np.array([-10.0, -10.0, 0.0]) + 2.5 * i * n
        ds = ct(series=ROOT + ".81", instance=4 - i)
        ds.GantryDetectorTilt = "20"
        ds.ImageOrientationPatient = [1, 0, 0, 0, float(c20), float(s20)]
        ds.ImagePositionPatient = [float(x) for x in p]
        save(ds, "tilted", "t%d.dcm" % i)

    # with-localizer/: three axial slices and a localizer in one series.
    for i in range(3):
        save(ct(series=ROOT + ".91", z=2.5 * i, instance=i + 2),
             "with-localizer", "ax%d.dcm" % i)
    ds = ct(series=ROOT + ".91", instance=1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    save(ds, "with-localizer", "loc.dcm")

    # contiguous-phases/: two parts end to end as in step-and-shoot/, but
    # the second acquired 45 s after the first (another contrast phase):
    # two acquisitions.
    for a in (1, 2):
        for i in range(4):
            z = 10.0 * (a - 1) + 2.5 * i
            ds = ct(series=ROOT + ".65", z=z, acq=a,
                    instance=(a - 1) * 4 + i + 1)
            ds.AcquisitionTime = "1200%02d" % (45 * (a - 1))
            save(ds, "contiguous-phases", "%d-%d.dcm" % (a, i))


if __name__ == "__main__":
    main()
