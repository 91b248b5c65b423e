/* SPDX-License-Identifier: ISC */
/*
 * version: the release every program of p2pvbd reports with --version, kept
 * in one place so that p2pvbd and p2pvbd-tracker never disagree.
 */
#ifndef P2PVBD_VERSION_H
#define P2PVBD_VERSION_H

#define P2PVBD_VERSION "0.1.0"

#endif
