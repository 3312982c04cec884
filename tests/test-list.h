/* Every unit test, one module list each. See test.h. */
#include "list-nn.h"
#include "list-kernels.h"
#include "list-dicom.h"
#include "list-phantom.h"
#include "list-predict.h"
#include "list-explain.h"
#include "list-service.h"
#include "list-metrics.h"
