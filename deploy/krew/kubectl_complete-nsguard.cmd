@echo off
rem Completion of `kubectl nsguard` on Windows (see kubectl_complete-nsguard).
kubectl-nsguard.exe __complete %*
