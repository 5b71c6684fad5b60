/*
 * NeuroNova: a floor under the stack size of the threads Orthanc's HTTP server starts.
 *
 * Debian's libcivetweb (1.15, the HTTP server of Debian's Orthanc) is built with a fixed
 * 100 KiB thread stack (pthread_attr_setstacksize(attr, 0x19000)). GDCM 1.8 decodes on those
 * threads with stack frames of about 66 KiB, so decoding a JPEG 2000 image for a DICOMweb
 * /rendered request through a plugin route, or a JPEG baseline one when GDCM is not
 * restricted, overflows the stack and kills Orthanc with SIGSEGV (measured on Orthanc 1.13.0,
 * docs/runtime-facts.md). Loaded with LD_PRELOAD into Orthanc only, this raises every
 * requested thread stack to at least 8 MiB (glibc's default for threads that ask for
 * nothing); larger requests are kept. Memory is reserved, not used: only touched pages count.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>

#define STACK_FLOOR ((size_t)8 * 1024 * 1024)

int pthread_attr_setstacksize(pthread_attr_t *attr, size_t size)
{
    static int (*real)(pthread_attr_t *, size_t) = NULL;
    if (real == NULL)
        real = (int (*)(pthread_attr_t *, size_t))dlsym(RTLD_NEXT, "pthread_attr_setstacksize");
    if (real == NULL)
        return 22; /* EINVAL: glibc always has it, so this is never reached */
    return real(attr, size < STACK_FLOOR ? STACK_FLOOR : size);
}
