# language: fr
@exigence=SC.DMP/HISTO.03 @exigence=SC.DMP/HISTO.05 @exigence=SC.DMP/HISTO.01
Fonctionnalité: SC.DMP/HISTO.03, HISTO.05, HISTO.01 — Envoi au DMP d'un document d'un épisode antérieur
  Un document du dossier datant d'un épisode de soins antérieur s'envoie à la main, seulement une fois l'INS du
  patient qualifiée ; il part en CDA R2 N1 avec la date de l'acte (pas celle de l'envoi), son auteur et l'INS.
  Le dossier le marque alors « envoyé au DMP », et ne l'envoie jamais deux fois.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: Une note de consultation ancienne envoyée au DMP après la qualification de l'INS
    Quand le médecin ouvre le dossier de "BOUCHER"
    Et le médecin demande l'envoi au DMP du document "Note de consultation — bilan annuel" de son dossier
    Alors le LGC refuse l'envoi tant que l'INS n'est pas qualifiée, et le DMP de "167100093480710" ne reçoit rien
    Quand l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"
    Et le médecin demande l'envoi au DMP du document "Note de consultation — bilan annuel" de son dossier
    Alors le DMP reçoit le document une fois, daté de l'acte du 02/10/2026, signé de son auteur, avec l'INS
    Et le dossier marque le document « envoyé au DMP » et ne propose plus de l'envoyer
