#!/bin/bash

DEV='/dev/sdb'

LOGFILE='/var/log/CMDlog'

log() {
    echo "$1" >> $LOGFILE
    echo "$1"
}

set_globals()
{
    HOST_NAME=`hostname`
    POOL_UUID=`xe pool-list --minimal`
    HOST_UUID=`xe host-list hostname=$HOST_NAME --minimal`
}

run_ops()
{
    set_globals

    log "---START on $SR_TYPE---"
    # SR create
    log "sr-create"

    SR_UUID=`xe sr-create type=$SR_TYPE physical-size=0 content-type=user \
device-config-device=$DEV name-label=TestSR`
    PBD_UUID=`xe pbd-list sr-uuid=$SR_UUID --minimal`

    log "pool-param-set"
    xe pool-param-set uuid=$POOL_UUID default-SR=$SR_UUID

    # VM install

    log "vm-install"
    VM_UUID=`xe vm-install template="Debian Sarge 3.1" new-name-label=TestVM`

    # VM start and shutdown

    log "vm-start"
    xe vm-start uuid=$VM_UUID
log "vm-shutdown"
xe vm-shutdown uuid=$VM_UUID

# VM suspend / resume

log "vm-start"
xe vm-start uuid=$VM_UUID

log "sleep 30"
sleep 30

log "vm-suspend"
xe vm-suspend uuid=$VM_UUID

log "vm-resume"
xe vm-resume uuid=$VM_UUID

log "vm-shutdown"
xe vm-shutdown uuid=$VM_UUID

# vm migrate

log "vm-start"
xe vm-start uuid=$VM_UUID

sleep 30

log "vm-migrate"
xe vm-migrate live=true uuid=$VM_UUID host=$HOST_UUID

log "vm-shutdown"
xe vm-shutdown uuid=$VM_UUID

#VM start and force shutdown

log "vm-start"
xe vm-start uuid=$VM_UUID

log "vm-shutdown force"
xe vm-shutdown uuid=$VM_UUID --force

# VM clone
log "vm-clone"
CLONE_VM_UUID=`xe vm-clone uuid=$VM_UUID new-name-label=CloneTestVM`

# and uninstall clone
log "vm-uninstall clone"
xe vm-uninstall uuid=$CLONE_VM_UUID --force &> /dev/null

# VDI create and remove
log "vdi-create"
VDI_UUID=`xe vdi-create sr-uuid=$SR_UUID name-label=TestVDI type=user \
virtual-size=100MiB`

log "vdi-remove"
xe vdi-destroy uuid=$VDI_UUID

# VDI create and plug into VM
log "vm-start"
xe vm-start uuid=$VM_UUID

log "vdi-create"
VDI_UUID=`xe vdi-create sr-uuid=$SR_UUID name-label=TestVDI type=user \
virtual-size=100MiB`

log "vbd-create"
VBD_UUID=`xe vbd-create vdi-uuid=$VDI_UUID vm-uuid=$VM_UUID device=xvdc`

log "vbd-plug"
xe vbd-plug uuid=$VBD_UUID

sleep 10

log "vbd-unplug"
xe vbd-unplug uuid=$VBD_UUID

log "vdi-copy"
CLONE_VDI_UUID=`xe vdi-copy uuid=$VDI_UUID sr-uuid=$SR_UUID`

log "vm-shutdown force"
xe vm-shutdown uuid=$VM_UUID --force

log "vdi-destroy"
xe vdi-destroy uuid=$VDI_UUID

log "vdi-destroy clone"
xe vdi-destroy uuid=$CLONE_VDI_UUID


log "vm-uninstall"
xe vm-uninstall uuid=$VM_UUID --force &> /dev/null

log "vdi-create"
VDI_UUID=`xe vdi-create sr-uuid=$SR_UUID name-label=TestVDI type=user \
virtual-size=100MiB`

log "vdi-forget"
xe vdi-forget uuid=$VDI_UUID

log "hack - lvremove the volume, since we don't support vdi-introduce yet"
lvremove -f /dev/VG_XenStorage-$SR_UUID/LV-$VDI_UUID &> /dev/null
rm -f /var/run/sr-mount/$SR_UUID/$VDI_UUID.vhd

# SR destroy
log "pbd-unplug"
xe pbd-unplug uuid=$PBD_UUID

log "pbd-plug"
xe pbd-plug uuid=$PBD_UUID

log "pbd-plug 2x"
xe pbd-plug uuid=$PBD_UUID

log "pbd-unplug"
xe pbd-unplug uuid=$PBD_UUID

log "pbd-unplug 2x"
xe pbd-unplug uuid=$PBD_UUID

log "sr-destroy"
xe sr-destroy uuid=$SR_UUID

log "sr-create for forget"
SR_UUID=`xe sr-create type=$SR_TYPE physical-size=0 content-type=user \
device-config-device=$DEV name-label=TestSR`
PBD_UUID=`xe pbd-list sr-uuid=$SR_UUID --minimal`

log "pool-param-set"
xe pool-param-set uuid=$POOL_UUID default-SR=$SR_UUID

log "sr-unplug"
xe pbd-unplug uuid=$PBD_UUID

log "sr-forget"
xe sr-forget uuid=$SR_UUID


    log "sr-introduce"
    DUMMY_SR=`xe sr-introduce uuid=$SR_UUID name-label=TestSR type=$SR_TYPE \
content-type=user`

    log "pbd-create"
    PBD_UUID=`xe pbd-create host-uuid=$HOST_UUID sr-uuid=$SR_UUID \
device-config-device=$DEV`

    log "pbd-plug"
    xe pbd-plug uuid=$PBD_UUID

    log "sr-scan"
    xe sr-scan uuid=$SR_UUID

    log "pbd-unplug"
    xe pbd-unplug uuid=$PBD_UUID

    log "sr-destroy"
    xe sr-destroy uuid=$SR_UUID

    log "---FINISH on $SR_TYPE---"
    log ""
    log ""
}

SR_TYPE='lvm'
run_ops

SR_TYPE='ext'
run_ops

