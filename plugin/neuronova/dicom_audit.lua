-- NeuroNova: every C-FIND that Orthanc's own C-FIND SCP receives is an audit event
-- (plugin/neuronova/dicom_network.py; docs/security.md, "DICOM network").
-- Orthanc's Lua IncomingFindRequestFilter observes the query without replacing the SCP (the
-- Python plugin's RegisterFindCallback would replace it). The query goes on unchanged; a query
-- that cannot be audited is refused (fail closed).
function IncomingFindRequestFilter(query, origin)
   local audited, problem = pcall(RestApiPost, '/neuronova/dicom/c-find',
                                  DumpJson({query = query, origin = origin}, true))
   if not audited then
      error('NeuroNova: C-FIND refused, it could not be audited: ' .. tostring(problem))
   end
   return query
end

-- Every instance Orthanc sends by C-STORE (the sub-operations of a C-MOVE, a store asked through
-- the REST API) is an audit event too; an instance whose transfer cannot be audited is not sent.
function OutgoingCStoreInstanceFilter(dicom, destination)
   local audited = pcall(RestApiPost, '/neuronova/dicom/c-store-out',
                         DumpJson({study = dicom.StudyInstanceUID, instance = dicom.SOPInstanceUID,
                                   destination = destination}, true))
   return audited
end
