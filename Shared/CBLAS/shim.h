#ifndef CANDLECAST_CBLAS_SHIM_H
#define CANDLECAST_CBLAS_SHIM_H
#include <cblas.h>
#endif
