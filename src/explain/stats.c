/*
 * stats.c — Student's t tests for the masking experiment (paper,
 * "Statistics": t tests, Bonferroni correction, p < 0.05).
 *
 * The t distribution's CDF comes from the regularized incomplete beta
 * function: for t with df degrees of freedom,
 *
 *   P(|T| > |t|) = I_x(df/2, 1/2),  x = df / (df + t^2).
 *
 * I_x(a, b) is evaluated with its continued fraction (modified Lentz's
 * method), on the side x < (a+1)/(a+b+2) where it converges fast, and
 * through the symmetry I_x(a,b) = 1 - I_{1-x}(b,a) otherwise. The prefactor
 * x^a (1-x)^b / (a B(a,b)) is taken in logs with lgamma. Accuracy is about
 * 1e-12 relative, far more than p-values need.
 */
#include <float.h>
#include <math.h>

#include "ctphase/explain.h"

/* The continued fraction of I_x(a,b) (without its prefactor). */
static double betacf(double a, double b, double x) {
  const double tiny = 1e-300, eps = 1e-15;
  double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
  if (fabs(d) < tiny) d = tiny;
  d = 1.0 / d;
  double f = d;
  for (int m = 1; m <= 500; m++) {
    /* Even step: d_{2m} = m(b-m)x / ((a+2m-1)(a+2m)). */
    double num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m));
    d = 1.0 + num * d;
    c = 1.0 + num / c;
    if (fabs(d) < tiny) d = tiny;
    if (fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    f *= d * c;
    /* Odd step: d_{2m+1} = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)). */
    num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1));
    d = 1.0 + num * d;
    c = 1.0 + num / c;
    if (fabs(d) < tiny) d = tiny;
    if (fabs(c) < tiny) c = tiny;
    d = 1.0 / d;
    double delta = d * c;
    f *= delta;
    if (fabs(delta - 1.0) < eps) break;
  }
  return f;
}

double ctp_incbeta(double a, double b, double x) {
  if (!(a > 0) || !(b > 0) || isnan(x)) return NAN;
  if (x <= 0.0) return 0.0;
  if (x >= 1.0) return 1.0;
  double lfront = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) +
                  b * log1p(-x);
  if (x < (a + 1.0) / (a + b + 2.0))
    return exp(lfront) * betacf(a, b, x) / a;
  return 1.0 - exp(lfront) * betacf(b, a, 1.0 - x) / b;
}

double ctp_t_cdf(double t, double df) {
  if (isnan(t) || !(df > 0)) return NAN;
  if (isinf(t)) return t > 0 ? 1.0 : 0.0;
  double tail = 0.5 * ctp_incbeta(df / 2.0, 0.5, df / (df + t * t));
  return t > 0 ? 1.0 - tail : tail;
}

/* t = mean / (sd / sqrt(n)); two-sided p. */
static void finish(ctp_ttest *out) {
  out->df = out->n - 1;
  if (out->n < 2) {
    out->t = out->p = NAN;
    return;
  }
  double se = out->sd / sqrt((double)out->n);
  if (se == 0.0) {
    out->t = out->mean == 0.0 ? 0.0 : copysign(INFINITY, out->mean);
    out->p = out->mean == 0.0 ? 1.0 : 0.0;
    return;
  }
  out->t = out->mean / se;
  out->p = ctp_incbeta(out->df / 2.0, 0.5, out->df / (out->df + out->t * out->t));
}

/* Mean and sample SD of v - mu (mu subtracted for the test). */
static void moments(const double *v, const double *w, int n, double mu,
                    ctp_ttest *out) {
  double s = 0.0, ss = 0.0;
  for (int i = 0; i < n; i++) s += v[i] - (w ? w[i] : 0.0) - mu;
  double mean = n > 0 ? s / n : NAN;
  for (int i = 0; i < n; i++) {
    double d = v[i] - (w ? w[i] : 0.0) - mu - mean;
    ss += d * d;
  }
  out->n = n;
  out->mean = mean;
  out->sd = n > 1 ? sqrt(ss / (n - 1)) : NAN;
}

void ctp_ttest_one(const double *v, int n, double mu, ctp_ttest *out) {
  moments(v, NULL, n, mu, out);
  finish(out);
  out->mean += mu;  /* report the sample mean, tested against mu */
}

void ctp_ttest_paired(const double *a, const double *b, int n,
                      ctp_ttest *out) {
  moments(a, b, n, 0.0, out);
  finish(out);
}
