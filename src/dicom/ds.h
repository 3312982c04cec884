/*
 * ds.h — DICOM Decimal String values for the C++ writers (CT, SR, SC).
 */
#ifndef CTPHASE_DICOM_DS_H
#define CTPHASE_DICOM_DS_H

#include <stdio.h>
#include <string.h>

#include <cmath>
#include <string>

/* v as a Decimal String of at most 16 characters (the standard's limit):
 * the most significant digits up to max_digits that fit; 0 for NaN/inf. */
inline std::string ctp_dicom_ds(double v, int max_digits) {
  char buf[32];
  if (!std::isfinite(v)) v = 0;
  for (int prec = max_digits; prec >= 1; prec--) {
    snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (strlen(buf) <= 16) return buf;
  }
  return "0";
}

#endif
