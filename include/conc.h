/* conc.h - the conc umbrella under its old name: includes conc/conc.h - conc v0.1.0
 * SPDX-License-Identifier: MIT
 *
 * Kept so that `#include "conc.h"` keeps working. New code: #include "conc/conc.h".
 * (conc-forwarding-header: `make install` only replaces a conc.h that carries this tag.)
 */
#include "conc/conc.h"
