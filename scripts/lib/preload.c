/*
 * NeuroNova: what the runtime preloads (LD_PRELOAD) into Orthanc. Two things Orthanc 1.13 as
 * Debian builds it cannot be told by its configuration:
 *
 * 1. A floor under the stack size of the threads Orthanc's HTTP server starts.
 *    Debian's libcivetweb (1.15, the HTTP server of Debian's Orthanc) is built with a fixed
 *    100 KiB thread stack (pthread_attr_setstacksize(attr, 0x19000)). GDCM 1.8 decodes on those
 *    threads with stack frames of about 66 KiB, so decoding a JPEG 2000 image for a DICOMweb
 *    /rendered request through a plugin route, or a JPEG baseline one when GDCM is not
 *    restricted, overflows the stack and kills Orthanc with SIGSEGV (measured on Orthanc 1.13.0,
 *    docs/runtime-facts.md). This raises every requested thread stack to at least 8 MiB
 *    (glibc's default for threads that ask for nothing); larger requests are kept. Memory is
 *    reserved, not used: only touched pages count.
 *
 * 2. The DICOM port on loopback. Orthanc has no listen-address option for its DICOM server
 *    (HttpBindAddresses is for HTTP only): DCMTK binds every interface. When
 *    NEURONOVA_LOOPBACK_PORTS lists ports (comma-separated; scripts/run sets the DICOM port
 *    there unless NEURONOVA_REMOTE_ACCESS=true), a bind() of a TCP socket to the wildcard
 *    address on one of them is made a bind() to the loopback address of the same family.
 *    Nothing else is touched.
 *
 * SPDX-License-Identifier: AGPL-3.0-or-later
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define STACK_FLOOR ((size_t)8 * 1024 * 1024)

int pthread_attr_setstacksize(pthread_attr_t *attr, size_t size)
{
    static int (*real)(pthread_attr_t *, size_t) = NULL;
    if (real == NULL)
        real = (int (*)(pthread_attr_t *, size_t))dlsym(RTLD_NEXT, "pthread_attr_setstacksize");
    if (real == NULL)
        return EINVAL; /* glibc always has it, so this is never reached */
    return real(attr, size < STACK_FLOOR ? STACK_FLOOR : size);
}

/* Whether NEURONOVA_LOOPBACK_PORTS names this port (host byte order). */
static int loopback_port(unsigned port)
{
    const char *list = getenv("NEURONOVA_LOOPBACK_PORTS");
    if (list == NULL || port == 0)
        return 0;
    while (*list != '\0') {
        char *end = NULL;
        unsigned long value = strtoul(list, &end, 10);
        if (end == list)
            return 0; /* not a number: nothing is rewritten */
        if (value == port)
            return 1;
        list = (*end == ',') ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return 0;
    }
    return 0;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    static int (*real)(int, const struct sockaddr *, socklen_t) = NULL;
    if (real == NULL)
        real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (real == NULL) {
        errno = ENOSYS;
        return -1;
    }
    if (addr != NULL && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in v4;
        memcpy(&v4, addr, sizeof v4);
        if (v4.sin_addr.s_addr == htonl(INADDR_ANY) && loopback_port(ntohs(v4.sin_port))) {
            v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real(fd, (const struct sockaddr *)&v4, sizeof v4);
        }
    } else if (addr != NULL && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 v6;
        memcpy(&v6, addr, sizeof v6);
        if (memcmp(&v6.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0 && loopback_port(ntohs(v6.sin6_port))) {
            v6.sin6_addr = in6addr_loopback;
            return real(fd, (const struct sockaddr *)&v6, sizeof v6);
        }
    }
    return real(fd, addr, len);
}
