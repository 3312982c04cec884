/*
 * result.c — a prediction result as JSON (schemas/result.schema.json).
 *
 * No patient attributes are written: the result identifies the series by
 * its UIDs, number and description only, so it can be logged and stored.
 */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "ctphase/predict.h"

static cJSON *class_map(const float *v) {
  cJSON *o = cJSON_CreateObject();
  for (int c = 0; c < CTP_NUM_CLASSES; c++)
    cJSON_AddNumberToObject(o, ctp_class_name(c), (double)v[c]);
  return o;
}

static void add_str(cJSON *o, const char *key, const char *v) {
  cJSON_AddStringToObject(o, key, v ? v : "");
}

char *ctp_result_json(const ctp_result *r, int per_slice) {
  cJSON *o = cJSON_CreateObject();
  const ctp_slice *ref = r->series ? ctp_series_ref(r->series) : NULL;
  add_str(o, "study_instance_uid", ref ? ref->study_instance_uid : "");
  add_str(o, "series_instance_uid", r->series ? ctp_series_uid(r->series) : "");
  cJSON_AddNumberToObject(o, "series_number", ref ? ref->series_number : -1);
  add_str(o, "series_description", ref ? ref->series_description : "");
  cJSON_AddNumberToObject(o, "acquisition_number",
                          r->acq ? ctp_acquisition_number(r->acq) : -1);
  cJSON_AddNumberToObject(o, "acquisition_index",
                          r->acq ? ctp_acquisition_index(r->acq) : -1);
  if (r->err) {
    add_str(o, "phase", "error");
    add_str(o, "error", r->error);
  } else {
    add_str(o, "phase", ctp_phase_name(r->vote.phase));
    cJSON_AddNullToObject(o, "error");
  }
  add_str(o, "winner", r->err ? "" : ctp_class_name(r->vote.winner));
  cJSON_AddNumberToObject(o, "margin", r->err ? 0.0 : (double)r->vote.margin);
  cJSON_AddNumberToObject(o, "margin_threshold", (double)r->margin_threshold);
  cJSON_AddItemToObject(o, "vote_share", class_map(r->vote.share));
  cJSON_AddItemToObject(o, "mean_prob", class_map(r->vote.mean_prob));
  cJSON_AddNumberToObject(o, "slices_used", r->err ? 0 : r->nslices);
  cJSON_AddNumberToObject(o, "slices_skipped", r->nskipped);
  cJSON *sk = cJSON_AddArrayToObject(o, "skipped");
  for (int i = 0; i < r->nskipped; i++) {
    cJSON *s = cJSON_CreateObject();
    add_str(s, "path", r->skipped[i].slice->path);
    add_str(s, "reason", r->skipped[i].reason);
    add_str(s, "kind", ctp_skip_str(r->skipped[i].slice->skip));
    cJSON_AddItemToArray(sk, s);
  }
  int keys[3];
  int nk = r->err ? 0 : ctp_result_key_slices(r, 3, keys);
  cJSON *ka = cJSON_AddArrayToObject(o, "key_slices");
  for (int i = 0; i < nk; i++) cJSON_AddItemToArray(ka, cJSON_CreateNumber(keys[i]));
  if (per_slice && !r->err) {
    cJSON *arr = cJSON_AddArrayToObject(o, "slices");
    for (int i = 0; i < r->nslices; i++) {
      const ctp_slice_result *s = &r->slices[i];
      cJSON *e = cJSON_CreateObject();
      cJSON_AddNumberToObject(e, "index", i);
      add_str(e, "sop_instance_uid", s->slice->sop_instance_uid);
      cJSON_AddNumberToObject(e, "location_mm", s->slice->location);
      add_str(e, "argmax", ctp_class_name(s->argmax));
      cJSON_AddItemToObject(e, "probs", class_map(s->probs));
      cJSON_AddItemToArray(arr, e);
    }
  }
  cJSON *model = cJSON_AddObjectToObject(o, "model");
  add_str(model, "name", r->model_name);
  add_str(model, "sha256", r->model_sha256);
  cJSON *t = cJSON_AddObjectToObject(o, "timings_ms");
  cJSON_AddNumberToObject(t, "read", r->t_read * 1e3);
  cJSON_AddNumberToObject(t, "preprocess", r->t_preprocess * 1e3);
  cJSON_AddNumberToObject(t, "infer", r->t_infer * 1e3);
  cJSON_AddNumberToObject(t, "vote", r->t_vote * 1e3);
  cJSON_AddNumberToObject(t, "total", r->t_total * 1e3);
  char *s = cJSON_PrintUnformatted(o);
  cJSON_Delete(o);
  return s;
}
